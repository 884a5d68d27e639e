"""CSV tables read in chunks: the same numbers as a whole-file reader, and every bad cell named by row and column."""

import numpy as np
import pytest

import nnlift._csv as csv_module
from nnlift._csv import read_header, read_table


def _write_in_chunks(path, blocks, header="a,b,y"):
    """A CSV written block by block (as a large file would be), with a blank line between blocks."""
    with open(path, "w") as handle:
        handle.write(header + "\n")
        for block in blocks:
            np.savetxt(handle, block, delimiter=",", fmt="%.17g")
            handle.write("\n")


def test_many_rows_read_in_chunks_match_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_module, "CHUNK_ROWS", 7)
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((rows, 3)) for rows in (500, 1, 313)]
    _write_in_chunks(tmp_path / "d.csv", blocks)
    X, y = read_table(tmp_path / "d.csv", ["b", "a"], "y")
    expected = np.vstack(blocks)
    assert X.dtype == np.float64 and X.flags.c_contiguous and y.dtype == np.float64
    np.testing.assert_array_equal(X, expected[:, [1, 0]])
    np.testing.assert_array_equal(y, expected[:, 2])
    features, no_target = read_table(tmp_path / "d.csv", ["y"])
    assert no_target is None
    np.testing.assert_array_equal(features[:, 0], expected[:, 2])


def test_text_labels_and_carriage_return_line_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_module, "CHUNK_ROWS", 2)
    # \r line ends have no \n to count, so the float array grows as the rows come
    (tmp_path / "d.csv").write_bytes(b'x,label\r1.5,cat\r-2,"dog, big"\r3e2,cat\r4,bird\r5,cat')
    X, labels = read_table(tmp_path / "d.csv", ["x"], "label", text_target=True)
    np.testing.assert_array_equal(X[:, 0], [1.5, -2, 300, 4, 5])
    assert labels.tolist() == ["cat", "dog, big", "cat", "bird", "cat"]


@pytest.mark.parametrize(("cell", "shown"), [("nan", "'nan'"), ("-inf", "'-inf'"), ("1e999", "'1e999'"),
                                             ("", "empty"), ("  ", "empty"), ("abc", "'abc'")])
def test_a_bad_cell_is_named_by_row_line_and_column(tmp_path, monkeypatch, cell, shown):
    monkeypatch.setattr(csv_module, "CHUNK_ROWS", 4)
    rows = [["1", "2", "3"] for _ in range(20)]
    rows[16][1] = cell
    lines = ["a,b,y", *(",".join(row) for row in rows)]
    lines.insert(3, "")  # a blank line: rows and lines part
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as error:
        read_table(tmp_path / "d.csv", ["a", "b"], "y")
    assert str(error.value) == (f"{tmp_path / 'd.csv'}: row 17 (line 19), column 'b' is {shown}; every feature "
                                "cell must be a finite number")


def test_target_cells_and_labels_are_checked(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,2\n3,nan\n")
    with pytest.raises(ValueError, match=r"row 2 \(line 3\), column 'y' is 'nan'; every target cell"):
        read_table(tmp_path / "d.csv", ["a"], "y")
    (tmp_path / "e.csv").write_text("a,y\n1,cat\n3,\n")
    with pytest.raises(ValueError, match=r"row 2 \(line 3\), column 'y' is empty; every row needs a class label"):
        read_table(tmp_path / "e.csv", ["a"], "y", text_target=True)


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty: it needs a header row"),
    ("a,b\n", "has a header but no data rows"),
    ("a,a\n1,2\n", r"names column\(s\) \['a'\] more than once"),
    ("a,b\n1,2\n3\n", r"row 2 \(line 3\) has 1 fields; the header has 2"),
    ("a,c\n1,2\n", r"has no column\(s\) \['b'\] \(its columns: a, c\)"),
])
def test_malformed_files_are_clear_errors(tmp_path, text, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_table(tmp_path / "d.csv", ["a", "b"])


def test_read_header(tmp_path):
    (tmp_path / "d.csv").write_text("x 1,y\n1,2\n")
    assert read_header(tmp_path / "d.csv") == ["x 1", "y"]
