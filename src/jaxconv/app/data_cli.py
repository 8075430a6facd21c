"""``jaxconv-data pack IMAGE_FOLDER OUT_DIR``: an image folder written as ArrayRecord
shards that ``data=array_record data.root=OUT_DIR`` trains from, with the very pixels
``data=image_folder`` would give (same examples, same order)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from jaxconv._errors import first_line
from jaxconv.data.files import DataError
from jaxconv.data.sources import ON_BAD_FILE, pack_image_folder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxconv-data",
        description="Dataset tools. Exit status 2, one line on stderr and nothing written "
        "when the input cannot be used.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser(
        "pack", help="write an image folder as ArrayRecord shards (train/val/test as found)"
    )
    pack.add_argument(
        "image_folder", help="one subfolder per class, under train/ val/ test/ or not"
    )
    pack.add_argument("out_dir", help="a new (or empty) folder for the shards and meta.json")
    pack.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                      help="resize (aspect kept) and centre-crop every image")  # fmt: skip
    pack.add_argument("--channels", type=int, choices=(1, 3), help="1: grayscale, 3: RGB")
    pack.add_argument("--on-bad-file", default="error", choices=ON_BAD_FILE)
    pack.add_argument("--shard-size", type=int, default=4096, help="records per shard")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out_dir)
    try:
        if args.shard_size < 1:
            raise ValueError(f"--shard-size (={args.shard_size}) must be >= 1")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"{out} exists and is not an empty folder: nothing written")
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written beside OUT_DIR and moved there whole: a failure leaves nothing behind.
        with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as scratch:
            meta = pack_image_folder(args.image_folder, scratch, image_size=args.image_size,
                                     channels=args.channels, on_bad_file=args.on_bad_file,
                                     shard_size=args.shard_size)  # fmt: skip
            if out.exists():
                out.rmdir()
            shutil.move(scratch, out)
            Path(scratch).mkdir()  # for the context manager's cleanup
    except (DataError, ValueError, OSError) as err:
        print(f"jaxconv-data: error: {first_line(err)}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{split} {n}" for split, n in meta["counts"].items())
    skipped = f"; skipped {len(meta['skipped'])} bad files" if meta["skipped"] else ""
    print(f"packed {counts} images of {len(meta['classes'])} classes into {out}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
