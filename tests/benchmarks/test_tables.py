"""benchmarks/tables.py: the markdown tables of the benchmark tools and the GPU check report."""
from benchmarks.tables import markdown_table


def test_numeric_columns_are_right_aligned_and_text_columns_are_not():
    table = markdown_table(["shape", "ms", "speed-up"], [["encoder", "41.8", "20.2×"], ["decoder", "0.8", "—"]])
    assert table.splitlines() == [
        "| shape | ms | speed-up |",
        "| --- | ---: | ---: |",
        "| encoder | 41.8 | 20.2× |",
        "| decoder | 0.8 | — |",
    ]


def test_an_empty_table_has_no_numeric_column():
    assert markdown_table(["a", "b"], []).splitlines()[1] == "| --- | --- |"
