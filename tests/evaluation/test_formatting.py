import logging

from ddetr_plugin.evaluation import flatten_results, format_table, print_csv_format
from ddetr_plugin.evaluation.formatting import format_per_class_table


def test_flatten_results_gives_metrics_json_keys():
    results = {"bbox": {"AP": 50.0, "AP50": 75.5, "AP-circle": 10.0}}
    assert flatten_results(results) == {"bbox/AP": 50.0, "bbox/AP50": 75.5, "bbox/AP-circle": 10.0}


def test_format_table_aligns_columns():
    table = format_table(["name", "AP"], [["a", 1.23456], ["long name", float("nan")]])
    lines = table.splitlines()
    assert lines[0] == "| name      | AP    |"
    assert lines[2] == "| a         | 1.235 |"
    assert lines[3] == "| long name | nan   |"
    assert len({len(line) for line in lines}) == 1


def test_per_class_table_pads_last_row():
    table = format_per_class_table({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, columns=3)
    lines = table.splitlines()
    assert len(lines) == 4  # header, separator, two rows
    assert lines[3].split("|")[1:3] == [" d        ", " 4.000 "]
    assert len({len(line) for line in lines}) == 1


def test_print_csv_format_leaves_out_per_class(caplog):
    with caplog.at_level(logging.INFO, logger="ddetr_plugin.evaluation"):
        print_csv_format({"bbox": {"AP": 50.0, "AP50": float("nan"), "AP-circle": 1.0}})
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["copypaste: Task: bbox", "copypaste: AP,AP50", "copypaste: 50.0000,nan"]
