"""Atomic outputs: a job's named outputs appear all together or not at all."""

import pytest

from mindvis.io import atomic_outputs


def test_outputs_in_several_folders_appear_together_and_replace_what_was_there(tmp_path):
    table, images = tmp_path / "a" / "table.csv", tmp_path / "b" / "images"
    images.mkdir(parents=True)
    (images / "old.png").write_text("stale")  # a rerun's folder output replaces the folder as a whole
    with atomic_outputs(table, images) as (table_tmp, images_tmp):
        assert table_tmp.name == "table.csv" and not table.exists()
        table_tmp.write_text("x\n")
        images_tmp.mkdir()
        (images_tmp / "new.png").write_text("fresh")
    assert table.read_text() == "x\n" and [p.name for p in images.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "images", "new.png", "table.csv"]


def test_a_failure_leaves_every_output_untouched_and_no_temporary_file(tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "out" / "second.json"
    first.write_text("old")
    with pytest.raises(RuntimeError), atomic_outputs(first, second) as (first_tmp, _):
        first_tmp.write_text("new")
        raise RuntimeError("the job failed before writing its second output")
    assert first.read_text() == "old" and not second.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["first.json", "out"]
