"""tools/check_requirements.py against a local package index (no network): markers and wheel tags are
judged for the target (Python, platform), not for the interpreter running the check."""
import os
import zipfile

from tools.check_requirements import Pair, pairs, platform_args, resolve


def _wheel(index, name, version, tag="py3-none-any", requires=()):
    """Write a minimal wheel of `name` into a PEP 503 index folder `index/name/`."""
    folder = index / name
    folder.mkdir(parents=True, exist_ok=True)
    filename = "%s-%s-%s.whl" % (name, version, tag)
    info = "%s-%s.dist-info" % (name, version)
    metadata = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
    metadata += "".join("Requires-Dist: %s\n" % r for r in requires)
    with zipfile.ZipFile(folder / filename, "w") as whl:
        whl.writestr(info + "/METADATA", metadata)
        whl.writestr(info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: %s\n" % tag)
        whl.writestr(info + "/RECORD", "")
    links = "".join('<a href="%s">%s</a>\n' % (f, f) for f in sorted(os.listdir(folder)) if f.endswith(".whl"))
    (folder / "index.html").write_text("<html><body>\n%s</body></html>\n" % links)


def _index(tmp_path):
    index = tmp_path / "simple"
    _wheel(index, "oldpkg", "1.0")
    _wheel(index, "oldpkg", "2.0")
    _wheel(index, "armonly", "1.0", tag="cp38-cp38-manylinux2014_aarch64")
    _wheel(index, "gpulib", "1.0", tag="py3-none-manylinux2014_x86_64")
    _wheel(index, "frame", "1.0", requires=['gpulib; platform_machine == "x86_64"'])
    return "file://%s" % index


def test_markers_follow_the_target_python_and_machine(tmp_path):
    url = _index(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text('oldpkg==1.0; python_version < "3.9"\noldpkg==2.0; python_version >= "3.9"\nframe\n')
    result = resolve(Pair("3.8", "aarch64", ()), str(req), url)
    assert result.installs == {"oldpkg": "1.0", "frame": "1.0"}, f"3.8 aarch64: {result.detail}"
    result = resolve(Pair("3.12", "x86_64", ()), str(req), url)
    assert result.installs == {"oldpkg": "2.0", "frame": "1.0", "gpulib": "1.0"}, f"3.12 x86_64: {result.detail}"


def test_a_pair_without_a_matching_wheel_fails_with_pips_error(tmp_path):
    url = _index(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text("armonly\n")
    assert resolve(Pair("3.8", "aarch64", ()), str(req), url).ok, "the cp38 aarch64 wheel fits 3.8 aarch64"
    result = resolve(Pair("3.8", "x86_64", ()), str(req), url)
    assert not result.ok and "armonly" in result.detail and result.detail.startswith("ERROR"), result.detail
    assert not resolve(Pair("3.9", "aarch64", ()), str(req), url).ok, "a cp38 wheel must not satisfy Python 3.9"


def test_pairs_cover_ten_targets_and_the_lock(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# pins\nnumpy==1.26.4\ntorch==2.14.1  # cpu\ntorchvision==0.29.1\n")
    found = pairs(str(lock))
    assert {(p.python, p.machine) for p in found[:10]} == {
        (py, m) for py in ("3.8", "3.9", "3.10", "3.11", "3.12") for m in ("aarch64", "x86_64")}
    assert all(p.extra == ("torch==2.1.0",) for p in found[:8]), "3.8-3.11 resolve with the Ascend torch 2.1"
    assert found[10].extra[-2:] == ("torch==2.14.1", "torchvision==0.29.1"), found[10]
    assert found[10].glibc == 28, "torch >= 2.6 has x86_64 wheels for glibc 2.28 only"
    assert len(pairs(str(tmp_path / "absent.txt"))) == 10, "no lock, no lock line"


def test_platform_tags_cover_every_older_manylinux():
    tags = platform_args(17, "aarch64")[1::2]
    assert tags[0] == "manylinux_2_17_aarch64" and tags[-2:] == ["manylinux_2_5_aarch64", "manylinux2014_aarch64"]
    assert len(tags) == 14, tags
    tags = platform_args(28, "x86_64")[1::2]
    assert {"manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
