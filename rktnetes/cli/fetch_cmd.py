"""`rkt fetch IMAGE...`: put images into the store and print each one's ID, like rkt."""

from __future__ import annotations

import argparse

from rktnetes.stage0.options import INSECURE_HELP, parse_insecure_options

EPILOG = """\
image references:
  docker://[REGISTRY/]NAME[:TAG|@DIGEST]  from a registry (docker:// may be left out;
                                          Docker Hub is the default registry)
  oci:DIR[:REF]                           an OCI image layout directory
  oci-archive:PATH[:REF]                  a tar archive of an OCI image layout
  docker-archive:PATH                     the output of `docker save`
  builtin:busybox                         the built-in default image (no network needed)

Registry mirrors, insecure and blocked registries come from <config-dir>/registries.conf
(containers-registries.conf(5) v2); credentials from <config-dir>/auth.json.

examples:
  rkt fetch builtin:busybox
  rkt fetch --insecure-options=http docker://127.0.0.1:5000/app:1.0
  rkt fetch --pull-policy=new registry.k8s.io/pause:3.9
"""


def register(sub, common, only: str | None = None) -> None:
    p = sub.add_parser(
        "fetch", parents=[common], help="fetch images into the store",
        description="Fetch images into the local store and print each image's ID\n"
                    "(its config digest) as the last line of output, like rkt.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image reference(s) to fetch")
    p.add_argument("--pull-policy", choices=["new", "update", "never"], default="update",
                   help="new: use the store's copy if present; update: always ask the source, "
                        "downloading only missing blobs (default); never: the store only")
    p.add_argument("--insecure-options", action="append", default=[], metavar="OPTS",
                   help=INSECURE_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def run(args, paths) -> int:
    from rktnetes.stage0.fetch import fetch

    opts = parse_insecure_options(args.insecure_options)  # (before anything is fetched)
    for image in args.images:
        rec = fetch(paths, image, pull_policy=args.pull_policy, insecure_http="http" in opts,
                    quiet=args.quiet, insecure_tls="tls" in opts)
        print(rec.id, flush=True)
    return 0
