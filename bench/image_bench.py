#!/usr/bin/env python3
"""Benchmark of kennel's images, printed as markdown.

    bench/image_bench.py [BUILD_DIR] [--rounds N] [--mib M]

1. Import: an OCI layout of two gzip layers (busybox-static, then about M
   MiB of the host's /usr/lib and /usr/share) imported with `kennel image
   import` into a fresh store, against `tar -xzf` of the same layer blobs
   into a fresh directory (GNU tar piping through gzip), and `tar -xf` of
   the uncompressed layers (no decompression, no digests: the floor).
   Median of 3 each, page cache warm. Speed is uncompressed MiB per second.
2. Start-up: N interleaved rounds of `kennel run -q -- /bin/true` (image
   host), `kennel run -q --image bench:1 -- /bin/true` (the imported
   image: an overlay of its layers over a tmpfs layer), the same pinned
   by digest (every layer tree re-hashed), and both with a disk-backed
   writable layer (`--disk 256m`: an ext4 image on a loop device);
   median, p90, min.
3. Snapshots, through a `kennel serve` on loopback: a sandbox of bench:1
   writes --snap-mib MiB in 200 files and deletes one file of the image;
   POST /sandboxes/{id}/snapshots until Ready (wall, and the time the
   sandbox was frozen, as the server reports it), against `tar -c | tar -x`
   of the same files on the host (the copy floor); then a create from the
   snapshot (snapshotId) against a create from the image itself, each until
   execd answers. --snap-rounds rounds, median and min.

Everything lives in a fresh 0755 directory under /var/tmp (the sandbox's
root, an unprivileged host id, must reach the store's layers), which is
removed at the end.
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration" / "image"))
import ocimake  # noqa: E402


def bulk_entries(mib):
    """Regular files from the host (none over 4 MiB, as in a distribution's
    image), up to mib MiB."""
    want, have, out, seen = mib << 20, 0, [], set()
    for top in ("/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib"):
        for d, dirs, files in os.walk(top):
            dirs.sort()
            rel = "bulk" + d
            for f in sorted(files):
                p = os.path.join(d, f)
                if (not os.path.isfile(p) or os.path.islink(p) or p in seen
                        or os.path.getsize(p) > (4 << 20)):
                    continue
                try:
                    with open(p, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                seen.add(p)
                out.append({"name": f"{rel}/{f}", "data": data, "mode": 0o644})
                have += len(data)
                if have >= want:
                    return out, have
    return out, have


def timed(argv, **kw):
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def request(port, method, path, body=None):
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        data = r.read()
        json_body = "json" in (r.getheader("Content-Type") or "") and data
        return r.status, (json.loads(data) if json_body else data)
    finally:
        c.close()


def snapshots(kennel, work, store, mib, rounds):
    import json
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sdir = work / "srv"
    sdir.mkdir()
    sdir.chmod(0o711)
    srv = subprocess.Popen([kennel, "serve", "-q", "--listen", f"127.0.0.1:{port}", "--db",
                            str(sdir / "db"), "--run-dir", str(sdir / "run"), "--image-store",
                            str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    limits = {"cpu": "1", "memory": "1Gi", "ephemeral-storage": f"{4 * mib + 64}Mi"}
    try:
        for _ in range(200):
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.02)

        def create(body):
            t = time.perf_counter()
            st, out = request(port, "POST", "/v1/sandboxes", body)
            assert st == 202, out
            return out["id"], (time.perf_counter() - t) * 1000

        per_file = mib * 1024 // 200
        write = (f"for i in $(seq 1 200); do dd if=/dev/urandom of=/work/f$i bs=1k "
                 f"count={per_file} 2>/dev/null; done; rm -f /bin/cat")
        cap, frozen, floor, restore, cold = [], [], [], [], []
        for r in range(rounds):
            sid, _ = create({"image": {"uri": "bench:1"}, "entrypoint": ["tail", "-f", "/dev/null"],
                             "resourceLimits": limits})
            st, _ = request(port, "POST", f"/sandboxes/{sid}/proxy/44772/command",
                            {"command": write})
            assert st == 200
            t = time.perf_counter()
            st, snap = request(port, "POST", f"/v1/sandboxes/{sid}/snapshots", {})
            assert st == 202, snap
            while snap["status"]["state"] == "Creating":
                time.sleep(0.002)
                snap = request(port, "GET", f"/v1/snapshots/{snap['id']}")[1]
            cap.append((time.perf_counter() - t) * 1000)
            assert snap["status"]["state"] == "Ready", snap
            frozen.append(float(snap["status"]["message"].split("frozen for ")[1].split(" ms")[0]))
            # The copy floor: the same bytes, tar to tar on the host.
            src = work / "floor-src"
            dst = work / "floor-dst"
            if r == 0:
                src.mkdir()
                for i in range(200):
                    (src / f"f{i}").write_bytes(os.urandom(per_file * 1024))
            dst.mkdir()
            t = time.perf_counter()
            subprocess.run(f"tar -C {src} -cf - . | tar -C {dst} -xf -", shell=True, check=True)
            floor.append((time.perf_counter() - t) * 1000)
            shutil.rmtree(dst)
            request(port, "DELETE", f"/v1/sandboxes/{sid}")
            rid, ms = create({"snapshotId": snap["id"], "resourceLimits": limits})
            restore.append(ms)
            request(port, "DELETE", f"/v1/sandboxes/{rid}")
            cid, ms = create({"image": {"uri": "bench:1"}, "entrypoint": ["tail", "-f", "/dev/null"],
                              "resourceLimits": limits})
            cold.append(ms)
            request(port, "DELETE", f"/v1/sandboxes/{cid}")
            request(port, "DELETE", f"/v1/snapshots/{snap['id']}")
        print("\n### Snapshots\n")
        print(f"A sandbox of bench:1 wrote {mib} MiB in 200 files and deleted /bin/cat; "
              f"{rounds} rounds through `kennel serve` on loopback, ms.\n")
        print("| | median | min |")
        print("|---|---:|---:|")
        for k, v in (("snapshot: POST until Ready", cap), ("of which the sandbox was frozen", frozen),
                     (f"`tar -c \\| tar -x` of {mib} MiB on the host (floor)", floor),
                     ("create from the snapshot (until execd answers)", restore),
                     ("create from bench:1 itself", cold)):
            print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} |")
        print(f"\nrestore - create from the image (median): "
              f"**{statistics.median(restore) - statistics.median(cold):+.2f} ms**")
    finally:
        srv.terminate()
        srv.wait(30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=str(HERE.parent / "build"))
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--snap-mib", type=int, default=20)
    ap.add_argument("--snap-rounds", type=int, default=10)
    a = ap.parse_args()
    kennel = str(pathlib.Path(a.build) / "kennel")
    work = pathlib.Path(tempfile.mkdtemp(prefix="kn-image-bench-", dir="/var/tmp"))
    work.chmod(0o755)
    try:
        entries, bulk = bulk_entries(a.mib)
        layers = [ocimake.busybox_entries(applets=("sh", "true", "dd", "seq", "tail", "rm",
                                                    "cat")), entries]
        oci = work / "oci"
        ocimake.oci_layout(oci, layers, name="bench:1", config={"Env": ["PATH=/bin"]})
        blobs = sorted((oci / "blobs" / "sha256").iterdir(), key=lambda p: -p.stat().st_size)[:2]
        raw = sum(len(ocimake.layer_tar(l)) for l in layers)
        comp = sum(b.stat().st_size for b in blobs)
        plain = []
        for k, l in enumerate(layers):
            plain.append(work / f"layer{k}.tar")
            plain[-1].write_bytes(ocimake.layer_tar(l))
        imp, tar, tarx = [], [], []
        for i in range(3):
            store = work / f"store{i}"
            imp.append(timed([kennel, "image", "--store", str(store), "import", str(oci)]))
            if i < 2:
                shutil.rmtree(store)
            dst = work / f"tar{i}"
            dst.mkdir()
            t = time.perf_counter()
            for b in blobs:
                subprocess.run(["tar", "-xzf", str(b), "-C", str(dst)], check=True)
            tar.append(time.perf_counter() - t)
            shutil.rmtree(dst)
            dst.mkdir()
            t = time.perf_counter()
            for b in plain:
                subprocess.run(["tar", "-xf", str(b), "-C", str(dst)], check=True)
            tarx.append(time.perf_counter() - t)
            shutil.rmtree(dst)
        mi, mt = statistics.median(imp), statistics.median(tar)
        print("### Import\n")
        print(f"Two gzip layers, {raw / 2**20:.1f} MiB uncompressed ({comp / 2**20:.1f} MiB "
              f"compressed), {sum(map(len, layers))} entries. Median of 3.\n")
        print("| | seconds | MiB/s (uncompressed) |")
        print("|---|---:|---:|")
        print(f"| `kennel image import` | {mi:.3f} | {raw / 2**20 / mi:.0f} |")
        print(f"| `tar -xzf` of the same blobs | {mt:.3f} | {raw / 2**20 / mt:.0f} |")
        mx = statistics.median(tarx)
        print(f"| `tar -xf` of the layers uncompressed (no gzip, no digests) | {mx:.3f} | "
              f"{raw / 2**20 / mx:.0f} |")
        print(f"\nimport / tar speed: **{mt / mi:.2f}** (target: at least 0.5)\n")

        env = dict(os.environ, KENNEL_STORE=str(work / "store2"))
        digest = subprocess.run([kennel, "image", "inspect", "bench:1"], env=env, check=True,
                                capture_output=True, text=True).stdout
        digest = digest.split('"digest": "')[1].split('"')[0]
        env["KENNEL_LAYER_DIR"] = str(work / "layers")
        cmds = {"host": [kennel, "run", "-q", "--", "/bin/true"],
                "image": [kennel, "run", "-q", "--image", "bench:1", "--", "/bin/true"],
                "image, pinned": [kennel, "run", "-q", "--image", f"bench:1@{digest}", "--",
                                  "/bin/true"],
                "host, disk layer": [kennel, "run", "-q", "--disk", "256m", "--", "/bin/true"],
                "image, disk layer": [kennel, "run", "-q", "--disk", "256m", "--image",
                                      "bench:1", "--", "/bin/true"]}
        times = {k: [] for k in cmds}
        for _ in range(3):
            for c in cmds.values():
                timed(c, env=env)
        for r in range(a.rounds):
            order = list(cmds)[r % len(cmds):] + list(cmds)[:r % len(cmds)]
            for k in order:
                times[k].append(timed(cmds[k], env=env) * 1000)
        print("### Start-up\n")
        print(f"`kennel run -q [--image bench:1[@DIGEST]] -- /bin/true`, {a.rounds} interleaved rounds "
              "after 3 warm-up rounds, wall ms from the caller.\n")
        print("| image | median | p90 | min |")
        print("|---|---:|---:|---:|")
        for k, v in times.items():
            print(f"| {k} | {statistics.median(v):.2f} | {pct(v, 90):.2f} | {min(v):.2f} |")
        d = statistics.median(times["image"]) - statistics.median(times["host"])
        print(f"\nimage - host (median): **{d:+.2f} ms** (target: within 2 ms)")
        snapshots(kennel, work, work / "store2", a.snap_mib, a.snap_rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
