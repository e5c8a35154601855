"""imaginebot: everything about Discord, people, policy and persistence."""
