"""The one C-array writer: model bytes (`common.export.tflm`) and the asc front end's tables
(`asc.features.c_sources`) are written by it, so a firmware sees one layout."""


def c_array_rows(items, per_line):
    """Initializer lines of a C array: `per_line` formatted items a line, two spaces in, each line
    ending with a comma (C allows the trailing one)."""
    return ["  " + ", ".join(items[start:start + per_line]) + "," for start in range(0, len(items), per_line)]


def c_array(declaration, items, per_line):
    """The lines of `declaration = { ... };` for already formatted `items` (strings).

    Example:
        c_array("const int32_t g_start[3]", ["0", "4", "9"], 16)
        -> ["const int32_t g_start[3] = {", "  0, 4, 9,", "};"]
    """
    return [f"{declaration} = {{", *c_array_rows(list(items), per_line), "};"]
