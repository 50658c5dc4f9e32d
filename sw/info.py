"""``xnorflow info``: every tool the flow uses, its version and location, and what is missing."""
import json
import sys

from xnorflow.sw.tools import TOOLS, describe


def add_parser(sub):
    p = sub.add_parser("info", help="list the tools the flow uses with versions and locations",
                       description=__doc__.strip("`").split(": ", 1)[1])
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def run(args):
    rows = [describe(t) for t in TOOLS]
    missing = [r for r in rows if r["missing"]]
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "tools": rows,
                          "missing": [r["name"] for r in missing]}, indent=2))
    else:
        print(f"python {sys.version.split()[0]}  {sys.executable}")
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            version = r["version"] or "-"
            where = r["location"] or "NOT FOUND"
            print(f"{r['name']:<{width}}  {version:<24}  {where}")
        if missing:
            names = ", ".join(r["name"] for r in missing)
            print(f"\nmissing: {names}. Run ./xnorflow from the repository root (it installs "
                  f"everything into .venv), or `pip install -e .` in your environment.")
        else:
            print("\nall tools present.")
    return 1 if missing else 0
