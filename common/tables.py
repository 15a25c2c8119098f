"""The summary table of `make demo` and `python -m TASK demo` (rows from common.runner.summary_row)."""

COLUMNS = [
    ("task", "task"),
    ("model", "model"),
    ("params", "params"),
    ("macs", "MACs"),
    ("metric_name", "metric"),
    ("float_metric", "float"),
    ("target", "export target"),
    ("int8_metric", "exported"),
    ("tflite_bytes", "TFLite size"),
    ("latency_ms", "latency/example"),
    ("mcu_flash_bytes", "MCU flash"),
    ("mcu_arena_bytes", "MCU arena"),
    ("more_metrics", "more (float)"),
]
# Shown only when some row has a value (landslide's IoUs; rsic and asc rows have none).
OPTIONAL_COLUMNS = {"more_metrics"}


def format_cell(key, value):
    """A summary value as people read it: 1.23M params, 0.950, 146 KB, 1.52 ms; '-' when absent."""
    if value is None:
        return "-"
    if key in ("params", "macs"):
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"
    if key in ("tflite_bytes", "mcu_flash_bytes", "mcu_arena_bytes"):
        return f"{value / 1024:.0f} KB" if value < 1024**2 else f"{value / 1024**2:.2f} MB"
    if key in ("float_metric", "int8_metric"):
        return f"{value:.3f}"
    if key == "more_metrics":
        return ", ".join(f"{name} {score:.3f}" for name, score in value.items())
    if key == "latency_ms":
        return f"{value:.2f} ms"
    return str(value)


def markdown_table(rows, columns=COLUMNS):
    """Rows (dicts) as a Markdown table with the given (key, title) columns (an OPTIONAL_COLUMNS
    column only when some row has a value for it)."""
    columns = [(key, title) for key, title in columns
               if key not in OPTIONAL_COLUMNS or any(row.get(key) is not None for row in rows)]
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(key, row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines)
