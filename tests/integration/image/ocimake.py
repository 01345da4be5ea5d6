"""Builds OCI image layouts and `docker save` tarballs for the image tests,
with nothing but the standard library: an image is JSON plus tar blobs
named by their sha256.

A layer is described as a list of entries (dicts): {"name", "type"
("file", "dir", "symlink", "hardlink", "chr", "fifo"), "data", "link",
"mode", "uid", "gid"}. Hostile layers are written the same way, so the
tests can say exactly what a malicious archive holds.
"""
import gzip
import hashlib
import io
import json
import os
import tarfile

TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
         "fifo": tarfile.FIFOTYPE}


def layer_tar(entries, fmt=tarfile.PAX_FORMAT):
    """The uncompressed tar bytes of a layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = TYPES[e.get("type", "file")]
            ti.mode = e.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
            ti.uid = e.get("uid", 0)
            ti.gid = e.get("gid", 0)
            ti.mtime = 1700000000
            if "link" in e:
                ti.linkname = e["link"]
            if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = e.get("dev", (1, 3))
            data = e.get("data", b"")
            if isinstance(data, str):
                data = data.encode()
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return buf.getvalue()


def busybox_entries(applets=("sh", "echo", "cat", "ls", "id", "env", "touch", "rm", "pwd")):
    with open("/bin/busybox", "rb") as f:
        bb = f.read()
    es = [{"name": d, "type": "dir"} for d in ("bin", "etc", "tmp", "root", "work")]
    es.append({"name": "bin/busybox", "data": bb, "mode": 0o755})
    es += [{"name": f"bin/{a}", "type": "symlink", "link": "busybox"} for a in applets]
    es.append({"name": "etc/passwd", "data": "root:x:0:0:root:/root:/bin/sh\n"
               "app:x:1234:2345:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"})
    es.append({"name": "etc/group", "data": "root:x:0:\napp:x:2345:\n"})
    return es


def sha(b):
    return hashlib.sha256(b).hexdigest()


def _write_blob(blobs, data):
    h = sha(data)
    with open(os.path.join(blobs, h), "wb") as f:
        f.write(data)
    return h


def image_config(diff_ids, config=None):
    return json.dumps({"architecture": "amd64", "os": "linux",
                       "config": config or {},
                       "rootfs": {"type": "layers",
                                  "diff_ids": [f"sha256:{d}" for d in diff_ids]}}).encode()


def oci_layout(path, layers, config=None, name=None, compress=True, corrupt=None):
    """Writes an OCI layout directory at path. layers: lists of entries (or
    raw tar bytes). corrupt: index of a layer whose blob is changed after
    its digest was taken (a digest mismatch). Returns the manifest digest."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)
    descs, diffs = [], []
    for i, l in enumerate(layers):
        raw = l if isinstance(l, bytes) else layer_tar(l)
        diffs.append(sha(raw))
        blob = gzip.compress(raw, mtime=0) if compress else raw
        h = _write_blob(blobs, blob)
        if corrupt == i:
            with open(os.path.join(blobs, h), "r+b") as f:
                f.seek(len(blob) // 2)
                b = f.read(1)
                f.seek(len(blob) // 2)
                f.write(bytes([b[0] ^ 0xff]))
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" +
                      ("+gzip" if compress else ""), "digest": f"sha256:{h}", "size": len(blob)})
    cfg = image_config(diffs, config)
    ch = _write_blob(blobs, cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": f"sha256:{ch}", "size": len(cfg)},
                      "layers": descs}).encode()
    mh = _write_blob(blobs, man)
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{mh}", "size": len(man)}
    if name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": name}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [desc]}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return f"sha256:{mh}"


def tar_dir(src, dst):
    """An uncompressed tar of a directory's contents (an oci-archive)."""
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(src)):
            t.add(os.path.join(src, name), arcname=name)


def docker_save(dst, layers, config=None, tag="busybox:docker"):
    """A `docker save` tarball in the pre-25 layout: manifest.json,
    <id>.json and <dir>/layer.tar."""
    raws = [l if isinstance(l, bytes) else layer_tar(l) for l in layers]
    cfg = image_config([sha(r) for r in raws], config)
    ch = sha(cfg)
    manifest = [{"Config": f"{ch}.json", "RepoTags": [tag] if tag else None,
                 "Layers": [f"{sha(r)}/layer.tar" for r in raws]}]
    with tarfile.open(dst, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
        add(f"{ch}.json", cfg)
        for r in raws:
            add(f"{sha(r)}/layer.tar", r)
        add("manifest.json", json.dumps(manifest).encode())
    return ch
