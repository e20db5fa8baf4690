"""Build a dataset offline from local original files:

    python -m gan_jax.data --dataset mnist --manual_dir DIR/mnist --data_dir ~/tensorflow_datasets
"""
from __future__ import annotations

import argparse
from typing import Sequence

from gan_jax.data import DATASET_NAMES


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gan_jax.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--data_dir", default="",
                        help="where the TFDS dataset is written (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    parser.add_argument("--manual_dir", default="",
                        help="folder holding the original files, looked in first (then $GAN_JAX_DATA/NAME, "
                             "DATA_DIR/downloads/manual/NAME and DATA_DIR/downloads/manual)")
    parser.add_argument("--max_examples", type=int, default=None, help="keep only the first N examples per split")
    parser.add_argument("--no_verify", action="store_true",
                        help="build from files that are deliberately not the published ones (a subset of your own): "
                             "skip the check against their published checksums (also: GAN_JAX_UNVERIFIED_DATA=1)")
    args = parser.parse_args(argv)

    from gan_jax.data import tfds_local  # TFDS is imported only once the arguments are valid

    tfds_local.prepare(args.dataset, args.data_dir, args.manual_dir, max_examples=args.max_examples,
                       verify=not args.no_verify)
    builder = tfds_local.local_builder(args.dataset, args.data_dir)
    sizes = ", ".join(f"{k}: {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
    verified = "verified" if builder.info.metadata.get("verified") else "NOT verified"
    print(f"{args.dataset}: {builder.data_dir} ({sizes}); original files {verified} against their published checksums")


if __name__ == "__main__":
    main()
