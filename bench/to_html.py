#!/usr/bin/env python3
"""Writes each xlsx given as the HTML table LibreOffice's export makes of
it (`<td sdval=…>` behind each number, dates as serials with ISO text,
`<br>` in empty cells), next to it as `<name>.html`, for timing
`ingest::html` against the same rows in xlsx (docs/PERFORMANCE.md).
LibreOffice itself takes minutes per 100,000-row file, hence this script.

Usage: bench/to_html.py FILE.xlsx...   (needs openpyxl)
"""
import datetime
import html
import sys

import openpyxl

EPOCH = datetime.datetime(1899, 12, 30)


def cell(value):
    if value is None:
        return '<td align="left"><br></td>'
    if isinstance(value, bool):
        return f'<td sdval="{int(value)}" sdnum="1033;0;BOOLEAN">{str(value).upper()}</td>'
    if isinstance(value, (int, float)):
        return f'<td align="right" sdval="{value}" sdnum="1033;">{value}</td>'
    if isinstance(value, datetime.datetime):
        serial = (value - EPOCH).total_seconds() / 86400
        serial = int(serial) if serial == int(serial) else serial
        return (f'<td align="right" sdval="{serial}" sdnum="1033;0;YYYY-MM-DD">'
                f'{value.date().isoformat()}</td>')
    return f'<td align="left">{html.escape(str(value))}</td>'


def convert(path):
    book = openpyxl.load_workbook(path, read_only=True)
    sheet = book.worksheets[0]
    out = path.rsplit(".", 1)[0] + ".html"
    with open(out, "w", encoding="utf-8") as f:
        f.write('<!DOCTYPE html>\n<html>\n<head>\n\t<meta http-equiv="content-type" '
                'content="text/html; charset=utf-8"/>\n\t<style type="text/css">\n'
                '\t\tbody,div,table,thead,tbody,tfoot,tr,th,td,p { font-family:"Calibri" }\n'
                '\t</style>\n</head>\n<body>\n<table cellspacing="0" border="0">\n')
        for row in sheet.iter_rows(values_only=True):
            f.write("\t<tr>\n")
            for value in row:
                f.write("\t\t" + cell(value) + "\n")
            f.write("\t</tr>\n")
        f.write("</table>\n</body>\n</html>\n")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        convert(name)
