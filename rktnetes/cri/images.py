"""runtime.v1.ImageService over the image store (rktnetes.stage0.images, stage0.fetch).

An image's CRI id is its config digest (`sha256:...`), the store's own id: PullImage returns
it as `image_ref`, and kubelet hands it back in ContainerConfig.image.
"""

from __future__ import annotations

import base64
import json
import threading
import time

from rktnetes.config import Paths
from rktnetes.errors import INVALID_ARGUMENT, AuthError
from rktnetes.image.auth import Credentials
from rktnetes.proto.runtime.v1 import api_pb2 as pb
from rktnetes.proto.runtime.v1 import api_pb2_grpc as pb_grpc
from rktnetes.stage0 import images as store_images

from .codes import guarded, guarded_stream
from .listing import chunks


def credentials(auth: pb.AuthConfig) -> Credentials | None:
    """kubelet's AuthConfig: user and password, `auth` (base64 of user:password), or a
    registry token. An identity token (an OAuth2 refresh token) needs a token exchange this
    client does not do: refused, not ignored."""
    if auth.registry_token:
        return Credentials("", "", token=auth.registry_token)
    if auth.username or auth.password:
        return Credentials(auth.username, auth.password)
    if auth.auth:
        try:
            user, sep, pw = base64.b64decode(auth.auth, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise AuthError("auth config: `auth` is not base64 of user:password",
                            kind=INVALID_ARGUMENT)
        return Credentials(user, pw)
    if auth.identity_token:
        raise AuthError("auth config: identity tokens are not supported; give a username "
                        "and password or a registry token", kind=INVALID_ARGUMENT)
    return None


def image_message(v: store_images.ImageView) -> pb.Image:
    img = pb.Image(id=v.record.id, repo_tags=v.repo_tags, repo_digests=v.repo_digests,
                   size=v.record.size, username=v.username,
                   spec=pb.ImageSpec(image=v.record.id))
    if v.uid is not None:
        img.uid.value = v.uid
    return img


class ImageService(pb_grpc.ImageServiceServicer):
    def __init__(self, paths: Paths):
        self.paths = paths
        self._pulls: dict[str, threading.Lock] = {}
        self._mu = threading.Lock()

    def _pull_lock(self, ref: str) -> threading.Lock:
        with self._mu:
            return self._pulls.setdefault(ref, threading.Lock())

    @guarded
    def PullImage(self, request, context):
        from rktnetes.stage0.fetch import fetch
        from rktnetes.stage0.spec import InvalidSpec

        ref = request.image.image
        if not ref:
            raise InvalidSpec("no image given")
        creds = credentials(request.auth) if request.HasField("auth") else None
        # one pull per reference at a time: the second waits and finds the image stored
        with self._pull_lock(ref):
            rec = fetch(self.paths, ref, "update", quiet=True, credentials=creds)
        return pb.PullImageResponse(image_ref=rec.id)

    @guarded
    def ImageStatus(self, request, context):
        if not request.image.image:
            from rktnetes.stage0.spec import InvalidSpec

            raise InvalidSpec("no image given")
        v = store_images.find(self.paths, request.image.image)
        if v is None:
            return pb.ImageStatusResponse()      # not there: no image, and no error
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"record": {"id": v.record.id,
                                                  "references": v.record.references,
                                                  "manifest": v.record.manifest_digest},
                                       "config": v.config.raw if v.config else None})
        return pb.ImageStatusResponse(image=image_message(v), info=info)

    def _list(self, f: pb.ImageFilter) -> list[pb.Image]:
        if f.image.image:
            v = store_images.find(self.paths, f.image.image)
            return [image_message(v)] if v else []
        return [image_message(v) for v in store_images.list_images(self.paths)]

    @guarded
    def ListImages(self, request, context):
        return pb.ListImagesResponse(images=self._list(request.filter))

    @guarded_stream
    def StreamImages(self, request, context):
        for part in chunks(self._list(request.filter)):
            yield pb.StreamImagesResponse(images=part)

    @guarded
    def RemoveImage(self, request, context):
        if request.image.image:
            store_images.remove(self.paths, request.image.image)   # absent: nothing to do
        return pb.RemoveImageResponse()

    @guarded
    def ImageFsInfo(self, request, context):
        u = store_images.fs_usage(self.paths)
        fs = pb.FilesystemUsage(timestamp=time.time_ns(),
                                fs_id=pb.FilesystemIdentifier(mountpoint=u.mountpoint),
                                used_bytes=pb.UInt64Value(value=u.used_bytes),
                                inodes_used=pb.UInt64Value(value=u.inodes_used))
        pods = store_images.fs_usage_of(self.paths.pods)
        cfs = pb.FilesystemUsage(timestamp=time.time_ns(),
                                 fs_id=pb.FilesystemIdentifier(mountpoint=pods.mountpoint),
                                 used_bytes=pb.UInt64Value(value=pods.used_bytes),
                                 inodes_used=pb.UInt64Value(value=pods.inodes_used))
        return pb.ImageFsInfoResponse(image_filesystems=[fs], container_filesystems=[cfs])

