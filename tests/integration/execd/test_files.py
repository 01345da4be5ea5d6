"""Files and directories API, confined to the served root (--root)."""
import json
import os
import socket
import urllib.parse

import pytest

q = urllib.parse.quote


def multipart(pairs, boundary="----formdata-kennel-0123456789"):
    out = b""
    for meta, content, name in pairs:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; "
                f"filename=\"metadata\"\r\nContent-Type: application/json\r\n\r\n").encode()
        out += json.dumps(meta).encode() + b"\r\n"
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(client, pairs):
    body, h = multipart(pairs)
    return client.request("POST", "/files/upload", body, headers=h)


def test_upload_download_info_delete(rooted):
    c, root = rooted.client, rooted.root
    content = "hello åäö world\n".encode() * 3
    st, h, data = upload(c, [({"path": "/tmp/a/b.txt", "mode": 600}, content, "b.txt"),
                             ({"path": "/empty.txt"}, b"", "e")])
    assert st == 200 and h["content-length"] == "0", data
    assert open(os.path.join(root, "tmp/a/b.txt"), "rb").read() == content
    assert oct(os.stat(os.path.join(root, "tmp/a/b.txt")).st_mode & 0o777) == "0o600"
    assert os.path.getsize(os.path.join(root, "empty.txt")) == 0
    st, h, data = c.request("GET", "/files/download?path=" + q("/tmp/a/b.txt", safe=""))
    assert st == 200 and data == content
    assert h["content-type"] == "application/octet-stream"
    assert 'filename="b.txt"' in h["content-disposition"]
    st, h, data = c.request("GET", "/files/download?path=/tmp/a/b.txt",
                            headers={"Range": "bytes=0-9"})
    assert st == 206 and data == content[:10]
    assert h["content-range"] == f"bytes 0-9/{len(content)}"
    st, h, data = c.request("GET", "/files/download?path=/tmp/a/b.txt",
                            headers={"Range": "bytes=-3"})
    assert st == 206 and data == content[-3:]
    st, h, data = c.request("GET", "/files/download?path=/tmp/a/b.txt",
                            headers={"Range": "bytes=9999-"})
    assert st == 416 and json.loads(data)["code"]
    st, info = c.json("GET", "/files/info?path=/tmp/a/b.txt&path=/tmp")
    assert st == 200
    i = info["/tmp/a/b.txt"]
    assert i["type"] == "file" and i["size"] == len(content) and i["mode"] == 600
    assert i["owner"] and i["group"] and i["modified_at"].endswith("Z")
    assert info["/tmp"]["type"] == "directory"
    st, h, _ = c.request("DELETE", "/files?path=/tmp/a/b.txt&path=/nope")
    assert st == 200 and h["content-length"] == "0"
    st, b = c.json("GET", "/files/download?path=/tmp/a/b.txt")
    assert st == 404 and b["code"] == "FILE_NOT_FOUND"
    st, b = c.json("GET", "/files/info?path=/tmp/a/b.txt")
    assert st == 404 and b["code"] == "FILE_NOT_FOUND"


def test_download_lines(rooted):
    c = rooted.client
    upload(c, [({"path": "/l.txt"}, b"line1\nline2\r\nline3\nline4\nline5\n", "l")])
    st, h, data = c.request("GET", "/files/download?path=/l.txt&offset=2&limit=2")
    assert st == 200 and data == b"line2\nline3"
    st, h, data = c.request("GET", "/files/download?path=/l.txt&offset=1")
    assert data == b"line1\nline2\nline3\nline4\nline5"
    st, h, data = c.request("GET", "/files/download?path=/l.txt&offset=0")
    assert st == 400
    st, h, data = c.request("GET", "/files/download?path=/l.txt&offset=1",
                            headers={"Range": "bytes=0-1"})
    assert st == 400


def test_upload_errors(rooted):
    c = rooted.client
    st, h, data = upload(c, [({"path": ""}, b"x", "x")])
    assert st == 400 and json.loads(data)["code"] == "INVALID_FILE_METADATA"
    st, h, data = c.request("POST", "/files/upload", b"{}",
                            headers={"Content-Type": "application/json"})
    assert st == 400 and json.loads(data)["code"]
    st, h, data = upload(c, [({"path": "/x", "mode": 999}, b"x", "x")])
    assert st == 400


def test_large_upload_is_streamed_not_buffered(rooted):
    """64 MiB through a chunked body; execd's RSS must stay far below that."""
    c, root = rooted.client, rooted.root
    boundary = "opensandbox_abc_123"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
            + json.dumps({"path": "/big.bin"}) +
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            "filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = bytes(range(256)) * 4096  # 1 MiB
    s = socket.socket(socket.AF_UNIX)
    s.connect(c.path)
    s.sendall(b"POST /files/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: multipart/form-data; boundary=" + boundary.encode() + b"\r\n\r\n")

    def chunk(b):
        s.sendall(b"%x\r\n" % len(b) + b + b"\r\n")

    chunk(head)
    for _ in range(64):
        chunk(block)
    chunk(tail)
    s.sendall(b"0\r\n\r\n")
    resp = s.recv(4096)
    s.close()
    assert resp.startswith(b"HTTP/1.1 200"), resp
    assert os.path.getsize(os.path.join(root, "big.bin")) == 64 * len(block)
    with open(f"/proc/{rooted.proc.pid}/status") as f:
        hwm = int([l for l in f if l.startswith("VmHWM:")][0].split()[1])
    assert hwm < 32 * 1024, f"peak RSS {hwm} KiB"
    st, h, data = c.request("GET", "/files/download?path=/big.bin",
                            headers={"Range": "bytes=1048576-1048831"})
    assert st == 206 and data == bytes(range(256))


def test_symlinks_and_dotdot_cannot_escape(rooted, tmpdir_path):
    c, root = rooted.client, rooted.root
    secret = os.path.join(tmpdir_path, "secret.txt")
    with open(secret, "w") as f:
        f.write("host secret")
    os.symlink(secret, os.path.join(root, "abs_link"))
    os.symlink("../secret.txt", os.path.join(root, "rel_link"))
    os.symlink("/", os.path.join(root, "rootlink"))
    for p in ["/abs_link", "/rel_link", "/../secret.txt", "../../secret.txt",
              "/rootlink/../secret.txt", "/rootlink/" + secret]:
        st, h, data = c.request("GET", "/files/download?path=" + q(p, safe=""))
        assert data != b"host secret", p
        assert st in (400, 404), (p, st)
    # Writes through a symlink land inside the root, never on the host.
    os.symlink(secret, os.path.join(root, "w_link"))
    st, h, data = upload(c, [({"path": "/w_link"}, b"overwritten", "x")])
    assert open(secret).read() == "host secret"
    st, h, data = upload(c, [({"path": "/../../escape.txt"}, b"x", "x")])
    assert st == 200
    assert os.path.exists(os.path.join(root, "escape.txt"))
    assert not os.path.exists(os.path.join(tmpdir_path, "escape.txt"))
    # chmod / replace / mv through symlinks stay inside as well.
    c.request("POST", "/files/permissions", {"/abs_link": {"mode": 777}})
    assert oct(os.stat(secret).st_mode & 0o777) != "0o777"
    c.request("POST", "/files/replace", {"/abs_link": {"old": "host", "new": "pwned"}})
    assert open(secret).read() == "host secret"
    st, b = c.json("GET", "/files/info?path=/abs_link")
    assert b["/abs_link"]["type"] == "symlink"


def test_bad_utf8_path(rooted):
    st, h, data = rooted.client.request("GET", "/files/info?path=%2Fa%FF%FE")
    assert st == 400 and json.loads(data)["code"]


def test_no_openat2_fallback_refuses_symlinks(execd_bin, tmpdir_path):
    from conftest import Daemon
    root = os.path.join(tmpdir_path, "r2")
    os.makedirs(os.path.join(root, "d"))
    with open(os.path.join(root, "d", "f"), "w") as f:
        f.write("inside")
    os.symlink("/etc", os.path.join(root, "etc_link"))
    d = Daemon(execd_bin, tmpdir_path, root=root, args=["--no-openat2"])
    try:
        st, h, data = d.client.request("GET", "/files/download?path=/d/f")
        assert st == 200 and data == b"inside"
        st, h, data = d.client.request("GET", "/files/download?path=/etc_link/passwd")
        assert st in (400, 404) and b"root:" not in data
    finally:
        d.stop()


def test_permissions_mv_replace(rooted):
    c, root = rooted.client, rooted.root
    upload(c, [({"path": "/p/f.txt"}, b"aaa bbb aaa", "f")])
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\nsbxuser:x:4242:4343::/:/bin/sh\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\nsbxgrp:x:4343:\n")
    st, h, _ = c.request("POST", "/files/permissions",
                         {"/p/f.txt": {"mode": 640, "owner": "sbxuser", "group": "sbxgrp"}})
    assert st == 200 and h["content-length"] == "0"
    sb = os.stat(os.path.join(root, "p/f.txt"))
    assert oct(sb.st_mode & 0o777) == "0o640" and (sb.st_uid, sb.st_gid) == (4242, 4343)
    st, info = c.json("GET", "/files/info?path=/p/f.txt")
    assert info["/p/f.txt"]["owner"] == "sbxuser" and info["/p/f.txt"]["group"] == "sbxgrp"
    st, b = c.json("POST", "/files/permissions", {"/p/f.txt": {"owner": "nosuchuser"}})
    assert st == 400
    st, b = c.json("POST", "/files/permissions", {"/p/f.txt": {"mode": 888}})
    assert st == 400
    st, b = c.json("POST", "/files/replace?verbose=true", {"/p/f.txt": {"old": "aaa", "new": "c"}})
    assert st == 200 and b == {"/p/f.txt": {"replacedCount": 2}}
    assert open(os.path.join(root, "p/f.txt")).read() == "c bbb c"
    st, h, _ = c.request("POST", "/files/replace", {"/p/f.txt": {"old": "bbb", "new": ""}})
    assert st == 200 and h["content-length"] == "0"
    st, b = c.json("POST", "/files/replace", {"/p/f.txt": {"old": "", "new": "x"}})
    assert st == 400
    st, h, _ = c.request("POST", "/files/mv", [{"src": "/p/f.txt", "dest": "/q/r/g.txt"}])
    assert st == 200 and h["content-length"] == "0"
    assert os.path.exists(os.path.join(root, "q/r/g.txt"))
    upload(c, [({"path": "/p/h.txt"}, b"h", "h")])
    st, b = c.json("POST", "/files/mv", [{"src": "/p/h.txt", "dest": "/q/r/g.txt"}])
    assert st == 409
    st, b = c.json("POST", "/files/mv", [{"src": "/nope", "dest": "/q/x"}])
    assert st == 404
    st, b = c.json("POST", "/files/mv", {"src": 1})
    assert st == 400


def test_directories_and_search(rooted):
    c, root = rooted.client, rooted.root
    st, h, _ = c.request("POST", "/directories", {"/w/a/b": {"mode": 700}, "/w/c": {"mode": 755}})
    assert st == 200 and h["content-length"] == "0"
    assert oct(os.stat(os.path.join(root, "w/a/b")).st_mode & 0o777) == "0o700"
    upload(c, [({"path": "/w/a/x.py"}, b"1", "x"), ({"path": "/w/a/b/y.py"}, b"2", "y"),
               ({"path": "/w/c/z.txt"}, b"3", "z")])
    st, res = c.json("GET", "/files/search?path=/w&pattern=*.py")
    assert st == 200 and sorted(r["path"] for r in res) == ["/w/a/b/y.py", "/w/a/x.py"]
    st, res = c.json("GET", "/files/search?path=/w")
    assert len(res) == 3
    st, b = c.json("GET", "/files/search?path=/nope&pattern=*")
    assert st == 404
    st, res = c.json("GET", "/directories/list?path=/w")
    assert [r["path"] for r in res] == ["/w/a", "/w/c"]
    st, res = c.json("GET", "/directories/list?path=/w&depth=2")
    assert [r["path"] for r in res] == ["/w/a", "/w/a/b", "/w/a/x.py", "/w/c", "/w/c/z.txt"]
    os.symlink("/w", os.path.join(root, "wl"))
    st, b = c.json("GET", "/directories/list?path=/wl")
    assert st == 400
    st, h, _ = c.request("DELETE", "/directories?path=/w")
    assert st == 200 and not os.path.exists(os.path.join(root, "w"))
    assert os.path.exists(os.path.join(root, "wl")) or True
    st, b = c.json("DELETE", "/directories?path=/")
    assert st == 400


def test_empty_directory_list_and_search(rooted):
    c, root = rooted.client, rooted.root
    os.makedirs(os.path.join(root, "empty"))
    st, res = c.json("GET", "/directories/list?path=/empty")
    assert st == 200 and res == []
    st, res = c.json("GET", "/files/search?path=/empty&pattern=*")
    assert st == 200 and res == []
