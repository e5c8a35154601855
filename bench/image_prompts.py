"""Benchmark: what an image prompt costs.

1. On the device: a grid that starts from a picture against a plain grid of the same prompt, seed and
   steps, on the trained tiny model. Target: the image prompt adds at most one VAE encode (of the
   start image), so `image / plain <= (plain + encode) / plain`. At `--iw 0` (strength 0.95) nearly
   every step still runs, which is the fair comparison; `--iw 1` runs 70 % of them and is cheaper.
2. In the bot, before the job is queued: fetching the picture(s) over loopback HTTP, keeping them and
   making the start image (all off the event loop), and the event loop's lag while 20 pictures are
   fetched at once, against the same loop idle. Target: lag < 20 ms.

    .venv/bin/python -m bench.image_prompts [--rounds 7] [--steps 40] [--pictures 20] [--side 1024]
    .venv/bin/python -m bench.image_prompts --save docs/img     # the README's pictures instead
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from bench._lag import LagMeter
from bot.fetch import FetchError, ImageFetcher, off_loop
from bot.jobs.sources import keep_sources, start_image
from engine.backends import load_backend
from engine.backends.diffusion import DiffusersBackend
from engine.images import make_grid
from engine.tiny.data import Scene, Shape, draw
from engine.types import GenerationRequest, Mode

PROMPT = "a yellow square on a black background"
ROOT = Path(__file__).resolve().parent.parent


def _run(backend: DiffusersBackend, request: GenerationRequest) -> float:
    started = time.perf_counter()
    backend.generate(request, on_progress=lambda _: None, cancelled=threading.Event())
    return time.perf_counter() - started


def _encode_s(backend: DiffusersBackend, start: Path, rounds: int) -> float:
    """One VAE encode of the start image at the grid's size, as img2img does it (median)."""
    pipe = backend.model.img2img
    with Image.open(start) as opened:
        image = pipe.image_processor.preprocess(opened.convert("RGB"), height=64, width=64)
    times = []
    with torch.no_grad():
        for _ in range(rounds):
            began = time.perf_counter()
            pipe.vae.encode(image.to(pipe.vae.dtype)).latent_dist.sample()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def device_part(args: argparse.Namespace, folder: Path) -> None:
    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    picture = draw(Scene("blue", (Shape("circle", "red", 1, "big", "in the top left"),), ((0.3, 0.3),)))
    picture.save(start := folder / "start.png")
    plain = GenerationRequest(PROMPT, seed=3, steps=args.steps)
    iw0 = GenerationRequest(
        PROMPT, seed=3, steps=args.steps, mode=Mode.IMAGE, init_image=start, image_weight=0.0, sources=("x",)
    )
    iw1 = GenerationRequest(
        PROMPT, seed=3, steps=args.steps, mode=Mode.IMAGE, init_image=start, image_weight=1.0, sources=("x",)
    )
    _run(backend, plain), _run(backend, iw0)  # warm-up: first calls build kernels and caches
    times: dict[str, list[float]] = {"plain": [], "iw0": [], "iw1": []}
    for _ in range(args.rounds):  # interleaved, so the machine's drift hits all three alike
        times["plain"].append(_run(backend, plain))
        times["iw0"].append(_run(backend, iw0))
        times["iw1"].append(_run(backend, iw1))
    encode = _encode_s(backend, start, args.rounds * 3)
    med = {name: statistics.median(values) for name, values in times.items()}
    bound = (med["plain"] + encode) / med["plain"]
    print(f"device: tiny model, {args.steps} steps, median of {args.rounds} interleaved rounds")
    print(f"  plain grid               {med['plain'] * 1000:7.1f} ms")
    for name, weight, strength in (("iw0", 0, 0.95), ("iw1", 1, 0.7)):
        ran = f"{int(args.steps * strength)} of {args.steps} steps at strength {strength}"
        print(f"  image prompt, --iw {weight}     {med[name] * 1000:7.1f} ms  ({ran})")
    print(f"  one VAE encode           {encode * 1000:7.1f} ms")
    print(
        f"  ratio --iw 0 / plain = {med['iw0'] / med['plain']:.3f} (target <= (plain + encode) / plain "
        f"= {bound:.3f}); --iw 1 / plain = {med['iw1'] / med['plain']:.3f}"
    )
    backend.close()


def _jpeg(n: int, side: int) -> bytes:
    """A photo-sized JPEG, each one different (so each is decoded and kept on its own)."""
    image = Image.radial_gradient("L").resize((side, side)).convert("RGB")
    image.paste((n * 12 % 256, 80, 200), (0, 0, side // 4, side // 4))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def bot_part(args: argparse.Namespace, folder: Path) -> None:
    """The pictures come from a web server in its own process, as they would from Discord's CDN."""
    served = folder / "served"
    served.mkdir()
    for n in range(args.pictures):
        (served / f"{n}.jpg").write_bytes(_jpeg(n, args.side))
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(served),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    urls = [f"http://127.0.0.1:{port}/{n}.jpg" for n in range(args.pictures)]
    fetcher = ImageFetcher(
        max_bytes=20 * 2**20,
        max_pixels=40_000_000,
        timeout_s=60,
        connect_timeout_s=5,
        allow_hosts=frozenset({f"127.0.0.1:{port}"}),
    )
    try:
        for _ in range(50):  # until the server answers
            try:
                (one,) = await fetcher.fetch_all(urls[:1])
                break
            except FetchError:
                await asyncio.sleep(0.1)
        began = time.perf_counter()
        (one,) = await fetcher.fetch_all(urls[:1])
        fetched_s = time.perf_counter() - began
        kept = await off_loop(keep_sources, folder, [one])
        start_s = time.perf_counter()
        await off_loop(start_image, folder, [one.sha256], kept, (16, 9))
        made_s = time.perf_counter() - start_s
        size_kib = len(one.data) / 1024
        print(f"bot: one {args.side}x{args.side} JPEG ({size_kib:.0f} KiB) from a server in another process")
        print(
            f"  fetch + decode {fetched_s * 1000:.1f} ms; "
            f"start image (crop to 16:9, save) {made_s * 1000:.1f} ms"
        )
        for attempt in range(1, args.rounds // 2 + 2):
            # An idle loop in another process over the same seconds: the machine's own lag meanwhile.
            reference = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench._lag", "2.5", stdout=asyncio.subprocess.PIPE, cwd=ROOT
            )
            await asyncio.sleep(0.3)  # its interpreter up and ticking
            with LagMeter() as busy:
                began = time.perf_counter()
                fetched = await fetcher.fetch_all([f"{url}?round={attempt}" for url in urls])
                kept = await off_loop(keep_sources, folder / f"round{attempt}", fetched)
                took = time.perf_counter() - began
            idle = (await reference.communicate())[0].decode().strip()
            print(
                f"  round {attempt}: {len(fetched)} pictures at once (fetch, decode, keep) in {took:.2f} s; "
                f"loop lag {busy.summary()} (target < 20 ms); an idle loop in another process "
                f"meanwhile: {idle}"
            )
    finally:
        await fetcher.close()
        server.terminate()
        await server.wait()


def save_pictures(folder: Path, out: Path) -> None:
    """`image-weight.png`: a picture, then the grids `--iw 0, 0.5, 1, 2, 3` make from it and a prompt
    that asks for other colours and another shape; `blend.png`: two pictures and their `/blend`."""
    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    out.mkdir(parents=True, exist_ok=True)

    def strip(pictures: list[tuple[str, Image.Image]], path: Path) -> None:
        font = ImageFont.load_default()
        height = max(image.height for _, image in pictures) * 2
        width = sum(image.width * 2 + 8 for _, image in pictures)
        canvas = Image.new("RGB", (width, height + 16), "white")
        x = 0
        for label, image in pictures:
            canvas.paste(image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST), (x, 16))
            ImageDraw.Draw(canvas).text((x + 2, 2), label, fill="black", font=font)
            x += image.width * 2 + 8
        canvas.save(path)

    def grid(request: GenerationRequest) -> Image.Image:
        result = backend.generate(request, on_progress=lambda _: None, cancelled=threading.Event())
        return make_grid(result.images)

    picture = draw(Scene("blue", (Shape("circle", "red", 1, "big", "in the top left"),), ((0.3, 0.3),)))
    picture.save(start := folder / "picture.png")
    shown = [("picture", picture.resize((128, 128), Image.Resampling.NEAREST))]
    for weight in (0, 0.5, 1, 2, 3):
        request = GenerationRequest(
            PROMPT, seed=21, mode=Mode.IMAGE, init_image=start, image_weight=weight, sources=("x",)
        )
        shown.append((f"--iw {weight:g}", grid(request)))
    shown.append(("no picture", grid(GenerationRequest(PROMPT, seed=21))))
    strip(shown, out / "image-weight.png")

    first = draw(Scene("black", (Shape("circle", "red", 1, "big", "in the top left"),), ((0.3, 0.3),)))
    second = draw(Scene("black", (Shape("circle", "yellow", 1, "big", None),), ((0.7, 0.7),)))
    sources = {"first": first, "second": second}
    made = start_image(folder, list(sources), sources, (1, 1))
    blend = GenerationRequest(
        "",
        seed=5,
        mode=Mode.IMAGE,
        init_image=folder / made.path,
        image_weight=2,
        sources=tuple(sources),
    )
    with Image.open(folder / made.path) as opened:
        start_picture = opened.resize((128, 128), Image.Resampling.LANCZOS)
    strip(
        [("first", first), ("second", second), ("start image", start_picture), ("/blend", grid(blend))],
        out / "blend.png",
    )
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pictures", type=int, default=20)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--save", type=Path, help="only write the README's pictures into this folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threads = torch.get_num_threads()
    print(f"machine: {platform.machine()}, {threads} torch thread, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.save is not None:
            save_pictures(Path(tmp), args.save)
            return
        device_part(args, Path(tmp))
        asyncio.run(bot_part(args, Path(tmp)))


if __name__ == "__main__":
    main()
