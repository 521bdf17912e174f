"""CSV/TSV rows that would be read wrong are reported with their line: an unclosed quote (which merges rows), a
line break inside a text, a row with too few fields."""
import pytest

from kdlab.data.loaders import load_data, load_eval_file
from kdlab.errors import KdlabError

GOOD = "".join(f"a fine film number {i},positive\na dull film number {i},negative\n" for i in range(10))


@pytest.mark.parametrize("body,needle", [
    # one unbalanced quote on line 4: before, the row silently swallowed the next one (a label lost)
    ('sentence,label\ngood one,positive\nbad one,negative\n"broken quote,positive\nnext row,negative\n' + GOOD,
     "the row starting on line 4 runs on to line"),
    ('sentence,label\ngood one,positive\n"a text with\na line break",negative\n' + GOOD,
     "the row starting on line 3 runs on to line 4"),
    ("sentence,label\ngood one,positive\nno label here\n" + GOOD,
     "row 2 (line 3) has 1 field(s) but the header has 2"),
])
def test_csv_rows_read_wrong_are_refused_with_their_line(tmp_path, body, needle):
    p = tmp_path / "d.csv"
    p.write_text(body)
    with pytest.raises(KdlabError, match=needle.replace("(", "\\(").replace(")", "\\)")):
        load_data(str(p))
    with pytest.raises(KdlabError, match="line"):
        load_eval_file(str(p), ["negative", "positive"])


def test_tsv_line_break_in_a_text_is_reported(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("sentence\tlabel\nfine\tpositive\ntext broken\u2028here\tnegative\n" + GOOD.replace(",", "\t"))
    with pytest.raises(KdlabError, match="row 2 \\(line 3\\) has 1 field"):
        load_data(str(p))


def test_well_formed_quoted_csv_still_reads(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('sentence,label\n"a film, with a comma",positive\n"he said ""fine""",negative\n' + GOOD)
    b = load_data(str(p))
    texts = list(b.train.texts) + list(b.dev.texts)
    assert "a film, with a comma" in texts and 'he said "fine"' in texts and len(texts) == 22
