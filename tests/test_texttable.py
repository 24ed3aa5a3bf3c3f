"""The one text table of the command line's output."""

from rnnbench.texttable import text_table


def test_columns_align_without_trailing_blanks() -> None:
    text = text_table(
        ("a", "bb", "verdict"), [("xxx", 1, "PASS"), ("y", 22, "FAIL: a long reason")]
    )
    assert text.split("\n") == [
        "a    bb  verdict",
        "---  --  -------------------",
        "xxx  1   PASS",
        "y    22  FAIL: a long reason",
    ]
    short_rule = text_table(("a", "verdict"), [("x", "a long message")], wrap_last=True)
    assert short_rule.split("\n")[1] == "-  -------"
    assert text_table(("a", "b"), [("1", "2")], rule=False) == "a  b\n1  2"
