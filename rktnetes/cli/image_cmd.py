"""`rkt image`: list, rm, gc, export, extract, render and cat-manifest images in the store."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from typing import TYPE_CHECKING

from rktnetes.config import Paths
from rktnetes.errors import RktError, UsageError

from .durations import parse_duration
from .output import add_format_flag, human_size, human_time, print_json, print_table

if TYPE_CHECKING:
    from rktnetes.store import ImageRecord, Store


def register(sub, common, only: str | None = None) -> None:
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
                         parents=[common],
                         description="Remove images and whatever of their blobs and layers no "
                         "other image needs. An image a pod uses (in any state) is refused; "
                         "remove the pod first.")
    rm.add_argument("images", nargs="+", metavar="IMAGE",
                    help="an image name, reference or unique ID prefix")
    rm.set_defaults(func=cmd_rm)

    gc = isub.add_parser("gc", help="remove images no pod used within the grace period",
                         parents=[common])
    gc.add_argument("--grace-period", default="24h", metavar="DURATION",
                    help="keep images used or imported more recently (default 24h; e.g. 30m, 0)")
    gc.set_defaults(func=cmd_gc)

    ex = isub.add_parser("export", help="write an image as an OCI archive", parents=[common],
                         description="Write an image as an OCI archive (a tar of an OCI image "
                         "layout) that skopeo, umoci and `rkt fetch oci-archive:` accept.")
    ex.add_argument("image", metavar="IMAGE", help="the image: a name, reference or ID prefix")
    ex.add_argument("out", metavar="OUT",
                    help="the archive file to write (its directory must exist), or - for "
                    "standard output (not a terminal)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace OUT if it is an existing regular file")
    ex.set_defaults(func=cmd_export)

    extract_desc = ("Write an image's root filesystem into DIR: its layers applied in order "
                    "(whiteouts delete). By default DIR/rootfs holds the tree, next to the "
                    "image's DIR/manifest and DIR/config. DIR's parent must exist; DIR must be "
                    "absent or an empty directory unless --overwrite.")
    for name, what, desc in (
            ("extract", "extract an image's root filesystem (its layers applied) to a directory",
             extract_desc),
            ("render", "alias of extract (rkt compatibility)",
             "Same as `rkt image extract`. In rkt, render also applied an appc image's "
             "dependencies; OCI and Docker images have none, so rendering an image is "
             "applying its layers, exactly what extract does.\n\n" + extract_desc)):
        r = isub.add_parser(name, help=what, parents=[common], description=desc)
        r.add_argument("image", metavar="IMAGE", help="the image: a name, reference or ID prefix")
        r.add_argument("target_dir", metavar="DIR",   # not `dir`: that is the global --dir
                       help="the directory to write; its parent must exist")
        r.add_argument("--rootfs-only", action="store_true",
                       help="write the root filesystem into DIR itself (default: DIR/rootfs "
                       "next to DIR/manifest and DIR/config)")
        r.add_argument("--overwrite", action="store_true",
                       help="replace DIR if it is a directory that is not empty")
        r.set_defaults(func=cmd_render)

    cm = isub.add_parser("cat-manifest", help="print an image's manifest", parents=[common])
    cm.add_argument("image", metavar="IMAGE", help="the image: a name, reference or ID prefix")
    cm.add_argument("--pretty-print", action="store_true", help="indent the JSON")
    cm.set_defaults(func=cmd_cat_manifest)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _store(paths: Paths) -> Store:
    from rktnetes.store import Store  # imported by the command, not to build the parser

    return Store.open(paths)


def find_image(store: Store, name: str) -> ImageRecord:
    """Resolve IMAGE: a reference as typed or normalized, a full ID, or a unique ID prefix."""
    from rktnetes.image.reference import local_candidates

    return store.images.find(name, local_candidates(name))


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
    from rktnetes.store.gc import image_users, remove_images

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
            remove_images(store, [image_id], lambda: image_users(paths))
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
    from rktnetes.image.export import export_image, export_to_stream, target_path

    if args.out == "-":
        if args.overwrite:
            raise UsageError("--overwrite replaces a file: it has no meaning with - (standard "
                             "output)")
        if sys.stdout is None or sys.stdout.isatty():
            raise UsageError("refusing to write an archive to a terminal or a closed standard "
                             "output: redirect it, or give a file")
        store = _store(paths)
        export_to_stream(store, find_image(store, args.image), sys.stdout.buffer)
        return 0
    out = target_path(args.out, "the archive")   # before the store is touched
    store = _store(paths)
    export_image(store, find_image(store, args.image), out, overwrite=args.overwrite)
    return 0


def cmd_render(args, paths: Paths) -> int:
    from rktnetes.image.export import file_kind, target_path
    from rktnetes.image.render import check_replaceable, render_into

    dest = target_path(args.target_dir, "the target directory")
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise RktError(f"cannot write {dest}: {e.strerror or e}") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        # --overwrite replaces a directory's contents, never a file, device or symlink
        raise RktError(f"{dest} is a {file_kind(st.st_mode)}, not a directory; "
                       f"refusing to replace it")
    if st is not None and args.overwrite:
        check_replaceable(dest, [paths.data, paths.config])
    store = _store(paths)
    rec = find_image(store, args.image)
    try:
        with store.gc_lock.held(shared=True):   # the layer blobs must stay while they are read
            if args.rootfs_only:
                render_into(store, rec, dest, overwrite=args.overwrite)
            else:
                files = {"manifest": store.blobs.read(rec.manifest_digest),
                         "config": store.blobs.read(rec.id)}
                render_into(store, rec, dest, overwrite=args.overwrite,
                            rootfs_subdir="rootfs", files=files)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise RktError(f"cannot write {dest}: {e.strerror or e}{where}") from None
    return 0


def cmd_cat_manifest(args, paths: Paths) -> int:
    store = _store(paths)
    raw = store.blobs.read(find_image(store, args.image).manifest_digest)
    if args.pretty_print:
        print(json.dumps(json.loads(raw), indent=2))
    else:
        sys.stdout.write(raw.decode() + ("" if raw.endswith(b"\n") else "\n"))
    return 0
