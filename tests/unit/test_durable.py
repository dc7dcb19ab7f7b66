"""What a kill leaves of a file or folder being written: the old one whole, or the new one whole."""

import pytest

from debate_amp.durable import write_whole, written_whole


def _pieces(fail_after: int):
    for i in range(3):
        if i == fail_after:
            raise KeyboardInterrupt  # the process dies between two pieces
        yield f"line {i}\n"


def test_a_file_written_whole_or_left_as_it_was(tmp_path):
    path = tmp_path / "final.json"
    write_whole(path, "old\n")
    with pytest.raises(KeyboardInterrupt):
        write_whole(path, _pieces(fail_after=2))
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["final.json"]
    write_whole(path, _pieces(fail_after=3))
    assert path.read_text() == "line 0\nline 1\nline 2\n"
    write_whole(tmp_path / "new" / "config.yaml", "a: 1\n")  # its folder made as needed
    assert (tmp_path / "new" / "config.yaml").read_text() == "a: 1\n"


def test_a_folder_written_whole_or_left_as_it_was(tmp_path):
    path = tmp_path / "model"
    with written_whole(path) as partial:
        (partial / "config.json").write_text("{}")
        (partial / "weights").write_text("v1")
    with pytest.raises(KeyboardInterrupt), written_whole(path) as partial:
        (partial / "config.json").write_text("{}")
        raise KeyboardInterrupt  # before the weights
    assert (path / "weights").read_text() == "v1"  # the old folder, whole
    with written_whole(path) as partial:
        (partial / "config.json").write_text("{}")
        (partial / "weights").write_text("v2")
    assert (
        sorted(p.name for p in path.iterdir()) == ["config.json", "weights"] and (path / "weights").read_text() == "v2"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the killed write's folder cleared


@pytest.mark.parametrize("target", ["..", ".", "runs/r/..", ""])
def test_a_folder_that_is_a_parent_or_the_current_one_is_never_written_whole(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "r").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a folder of its own"), written_whole(target):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing made beside it, nothing moved
