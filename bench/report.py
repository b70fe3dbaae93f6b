"""The one table the benchmark prints: figures, what they are compared with, ratios, PASS/MISS."""

from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    figure: str
    basis: str
    ratio: str = ""
    target: str = ""
    result: str = ""
    note: str = ""


@dataclass
class Table:
    quick: bool = False
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def info(self, name: str, figure: str, basis: str = "") -> None:
        self.rows.append(Row(name, figure, basis))

    def target(self, name: str, figure: str, basis: str, ratio: float, op: str, limit: float, *, note: str = "",
               ratio_fmt: str = "{:.2f}") -> None:
        ok = ratio >= limit if op == ">=" else ratio <= limit
        if not ok:
            self.missed.append(name)
        self.rows.append(Row(name, figure, basis, ratio_fmt.format(ratio), f"{'≥' if op == '>=' else '≤'} {limit:g}",
                             "PASS" if ok else "MISS", note))

    def missing(self, name: str, why: str) -> None:
        self.missed.append(name)
        self.rows.append(Row(name, "n/a", why, result="MISS"))

    def render(self) -> str:
        header = Row("measure", "figure", "compared with", "ratio", "target", "result", "")
        cells = [header] + self.rows
        cols = ["name", "figure", "basis", "ratio", "target", "result"]
        widths = {c: max(len(getattr(r, c)) for r in cells) for c in cols}

        def line(row):
            text = " | ".join(getattr(row, c).ljust(widths[c]) for c in cols)
            return f"| {text} |" + (f" {row.note}" if row.note else "")

        rule = "|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|"
        title = "Benchmark (quick: small sizes, figures not asserted)" if self.quick else "Benchmark"
        out = [title, line(header), rule] + [line(r) for r in self.rows]
        out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)
