"""`rkt image`: list, rm, gc, export, extract, render and cat-manifest images in the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rktnetes.config import Paths
from rktnetes.errors import RktError

from .durations import parse_duration
from .output import add_format_flag, human_size, human_time, print_json, print_table

if TYPE_CHECKING:
    from rktnetes.store import ImageRecord, Store


def register(sub, common) -> None:
    p = sub.add_parser("image", help="operate on images in the local store", parents=[common],
                       description="List, remove, garbage-collect, export and render images "
                       "in the store. IMAGE is a name, a reference or a unique ID prefix.")
    p.set_defaults(func=lambda args, paths: _usage(p))
    isub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND")

    ls = isub.add_parser("list", help="list images", parents=[common])
    add_format_flag(ls)
    ls.add_argument("--no-trunc", action="store_true", help="show full IDs and every name")
    ls.set_defaults(func=cmd_list)

    rm = isub.add_parser("rm", help="remove images and the layers no other image needs",
                         parents=[common])
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    rm.set_defaults(func=cmd_rm)

    gc = isub.add_parser("gc", help="remove images no pod used within the grace period",
                         parents=[common])
    gc.add_argument("--grace-period", default="24h", metavar="DURATION",
                    help="keep images used or imported more recently (default 24h; e.g. 30m, 0)")
    gc.set_defaults(func=cmd_gc)

    ex = isub.add_parser("export", help="write an image as an OCI archive", parents=[common])
    ex.add_argument("image", metavar="IMAGE")
    ex.add_argument("out", metavar="OUT", help="the archive file to write")
    ex.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    ex.set_defaults(func=cmd_export)

    for name, what in (("extract", "extract an image's root filesystem to a directory"),
                       ("render", "render an image's layers into a directory")):
        r = isub.add_parser(name, help=what, parents=[common])
        r.add_argument("image", metavar="IMAGE")
        r.add_argument("target_dir", metavar="DIR")  # not `dir`: that is the global --dir
        r.add_argument("--rootfs-only", action="store_true",
                       help="write the root filesystem into DIR itself (default: DIR/rootfs "
                       "next to DIR/manifest and DIR/config)")
        r.add_argument("--overwrite", action="store_true", help="replace DIR if it is not empty")
        r.set_defaults(func=cmd_render)

    cm = isub.add_parser("cat-manifest", help="print an image's manifest", parents=[common])
    cm.add_argument("image", metavar="IMAGE")
    cm.add_argument("--pretty-print", action="store_true", help="indent the JSON")
    cm.set_defaults(func=cmd_cat_manifest)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _store(paths: Paths) -> Store:
    from rktnetes.store import Store  # imported by the command, not to build the parser

    return Store(paths.store)


def find_image(store: Store, name: str) -> ImageRecord:
    """Resolve IMAGE: a reference as typed or normalized, a full ID, or a unique ID prefix."""
    from rktnetes.image.reference import candidates

    return store.images.find(name, candidates(name))


def cmd_list(args, paths: Paths) -> int:
    from rktnetes.store.digest import short

    recs = sorted(_store(paths).images.all(), key=lambda r: r.imported_at)
    if args.format == "json":
        print_json([{
            "id": r.id, "name": r.name, "references": r.references, "size": r.size,
            "imported_at": r.imported_at, "last_used": r.last_used or None,
            "manifest_digest": r.manifest_digest, "platform": r.platform,
            "layers": len(r.layers),
        } for r in recs])
        return 0
    rows = []
    for r in recs:
        ident = r.id if args.no_trunc else f"sha256:{short(r.id)}"
        name = ",".join(r.references) if args.no_trunc and r.references else r.name
        rows.append((ident, name, human_size(r.size), human_time(r.imported_at),
                     human_time(r.last_used)))
    print_table(("ID", "NAME", "SIZE", "IMPORT TIME", "LAST USED"), rows)
    return 0


def cmd_rm(args, paths: Paths) -> int:
    from rktnetes.store.gc import images_in_use, remove_images

    store = _store(paths)
    ids: list[str] = []
    failed = 0
    for name in args.images:
        try:
            rec = find_image(store, name)
        except RktError as e:
            print(f"rkt: {e}", file=sys.stderr)
            failed += 1
            continue
        if rec.id not in ids:
            ids.append(rec.id)
    for image_id in ids:
        try:
            remove_images(store, [image_id], lambda: images_in_use(paths))
        except RktError as e:
            print(f"rkt: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"removed image {image_id}")
    return 1 if failed else 0


def cmd_gc(args, paths: Paths) -> int:
    from rktnetes.store.gc import gc_images, images_in_use

    grace = parse_duration(args.grace_period)
    res = gc_images(_store(paths), grace, lambda: images_in_use(paths))
    for image_id in res.removed_images:
        print(f"removed image {image_id}")
    print(f"gc: removed {len(res.removed_images)} image(s), {len(res.removed_blobs)} blob(s), "
          f"{len(res.removed_layers)} layer(s); freed {human_size(res.freed_bytes)}")
    return 0


def cmd_export(args, paths: Paths) -> int:
    from rktnetes.image.export import export_image

    store = _store(paths)
    export_image(store, find_image(store, args.image), Path(args.out), overwrite=args.overwrite)
    return 0


def cmd_render(args, paths: Paths) -> int:
    from rktnetes.image.render import render_into

    store = _store(paths)
    rec = find_image(store, args.image)
    with store.gc_lock.held(shared=True):   # the layer blobs must stay while they are read
        if args.rootfs_only:
            render_into(store, rec, Path(args.target_dir), overwrite=args.overwrite)
        else:
            files = {"manifest": store.blobs.read(rec.manifest_digest),
                     "config": store.blobs.read(rec.id)}
            render_into(store, rec, Path(args.target_dir), overwrite=args.overwrite,
                        rootfs_subdir="rootfs", files=files)
    return 0


def cmd_cat_manifest(args, paths: Paths) -> int:
    store = _store(paths)
    raw = store.blobs.read(find_image(store, args.image).manifest_digest)
    if args.pretty_print:
        print(json.dumps(json.loads(raw), indent=2))
    else:
        sys.stdout.write(raw.decode() + ("" if raw.endswith(b"\n") else "\n"))
    return 0
