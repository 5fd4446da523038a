"""Markdown tables for the benchmark tools and the GPU check report.

No torch import: the GPU check renders its report before anything is built.
"""


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured table; numbers are right-aligned by the column markers."""
    def line(cells):
        return "| " + " | ".join(cells) + " |"

    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(header))]
    markers = ["---:" if is_number else "---" for is_number in numeric]
    return "\n".join([line(header), line(markers)] + [line(row) for row in rows])


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("×x"))
    except ValueError:
        return text == "—"
    return True
