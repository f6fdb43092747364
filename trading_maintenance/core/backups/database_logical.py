"""The logical export of a PostgreSQL schema: its DDL as JSON plus one JSON-lines file per table,
validated field by field before any of it reaches SQL on restore."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, MetaData, Table, inspect, text

from trading_maintenance.core.backups.database import PG_COLUMN_TYPE, SCHEMA, UntrustedDumpError, check_identifier, decode_value, encode_value, order_by_columns


def pg_logical_export(conn, out_dir: Path, schema: str) -> list[tuple[str, Path]]:
    insp = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    tables = []
    files = []
    for table in sorted(insp.get_table_names(schema=schema)):
        cols = insp.get_columns(table, schema=schema)
        pk = insp.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
        column_defs = []
        for col in cols:
            default = str(col.get("default") or "")
            identity = bool(col.get("identity")) or default.startswith("nextval(")
            column_defs.append(
                {
                    "name": col["name"],
                    "type": col["type"].compile(dialect=conn.dialect),
                    "nullable": bool(col["nullable"]),
                    "identity": identity,
                }
            )
        indexes = [
            {"name": ix["name"], "columns": ix["column_names"], "unique": bool(ix.get("unique"))}
            for ix in insp.get_indexes(table, schema=schema)
            if all(ix.get("column_names") or [None])
        ]
        uniques = [{"name": u["name"], "columns": u["column_names"]} for u in insp.get_unique_constraints(table, schema=schema)]
        tables.append({"name": table, "columns": column_defs, "primary_key": pk, "indexes": indexes, "unique": uniques})
        path = out_dir / f"{table}.jsonl"
        columns = [c["name"] for c in cols]
        result = conn.execution_options(stream_results=True).execute(
            text(f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(schema)}.{quote(table)} ORDER BY {order_by_columns(pk, columns, quote)}")
        )
        with open(path, "w") as out:
            out.write(json.dumps({"columns": columns}) + "\n")
            for row in result:
                out.write(json.dumps([encode_value(v) for v in row], separators=(",", ":")) + "\n")
        files.append((f"database/logical/{table}.jsonl", path))
    schema_path = out_dir / "schema.json"
    schema_path.write_text(json.dumps({"schema": schema, "tables": tables}, indent=1))
    return [("database/logical/schema.json", schema_path), *files]


def validate_logical_spec(logical_dir: str | Path) -> dict:
    """The logical export's schema.json, checked field by field before any of it reaches SQL.

    Names must be plain identifiers (they are quoted too), column types come from PG_COLUMN_TYPE,
    flags are booleans, and each table's data file exists and lists exactly the table's columns.
    """
    logical_dir = Path(logical_dir)
    try:
        spec = json.loads((logical_dir / "schema.json").read_text())
    except (OSError, ValueError):
        raise UntrustedDumpError("database/logical/schema.json is missing or not valid JSON") from None
    tables = spec.get("tables") if isinstance(spec, dict) else None
    if not isinstance(tables, list):
        raise UntrustedDumpError("schema.json field 'tables' is not a list")
    seen = set()
    for t_index, table in enumerate(tables):
        where = f"schema.json tables[{t_index}]"
        if not isinstance(table, dict):
            raise UntrustedDumpError(f"{where} is not an object")
        name = check_identifier(table.get("name"), f"{where}.name")
        if name in seen:
            raise UntrustedDumpError(f"{where}.name {name!r} appears twice")
        seen.add(name)
        columns = table.get("columns")
        if not isinstance(columns, list) or not columns:
            raise UntrustedDumpError(f"{where}.columns is not a non-empty list")
        names = []
        for c_index, col in enumerate(columns):
            field = f"{where}.columns[{c_index}]"
            if not isinstance(col, dict):
                raise UntrustedDumpError(f"{field} is not an object")
            names.append(check_identifier(col.get("name"), f"{field}.name"))
            if not isinstance(col.get("type"), str) or not PG_COLUMN_TYPE.match(col["type"]):
                raise UntrustedDumpError(f"{field}.type {str(col.get('type'))[:80]!r} is not an allowed column type: refused")
            for flag in ("nullable", "identity"):
                if not isinstance(col.get(flag), bool):
                    raise UntrustedDumpError(f"{field}.{flag} is not true or false")
        for key in ("primary_key",):
            if not isinstance(table.get(key), list) or any(c not in names for c in table[key]):
                raise UntrustedDumpError(f"{where}.{key} names columns the table does not have")
        for key in ("unique", "indexes"):
            entries = table.get(key, [])
            if not isinstance(entries, list):
                raise UntrustedDumpError(f"{where}.{key} is not a list")
            for i_index, entry in enumerate(entries):
                field = f"{where}.{key}[{i_index}]"
                if not isinstance(entry, dict) or not isinstance(entry.get("columns"), list) or not entry["columns"]:
                    raise UntrustedDumpError(f"{field} has no column list")
                check_identifier(entry.get("name"), f"{field}.name")
                if any(c not in names for c in entry["columns"]):
                    raise UntrustedDumpError(f"{field} names columns the table does not have")
                if key == "indexes" and not isinstance(entry.get("unique"), bool):
                    raise UntrustedDumpError(f"{field}.unique is not true or false")
        data_file = logical_dir / f"{name}.jsonl"
        try:
            with open(data_file) as handle:
                header = json.loads(handle.readline())
        except (OSError, ValueError):
            raise UntrustedDumpError(f"database/logical/{name}.jsonl is missing or has no column header") from None
        if not isinstance(header, dict) or header.get("columns") != names:
            raise UntrustedDumpError(f"database/logical/{name}.jsonl lists other columns than schema.json")
    return {"tables": tables}


def restore_logical(engine: Engine, logical_dir: str | Path, schema: str = SCHEMA) -> dict[str, int]:
    """Recreate schema `trading`'s tables from a validated logical export in one transaction.

    Only schema `trading` is touched: every name is qualified with it, the search path is set to it
    alone, and tables are dropped without CASCADE, so an object elsewhere that depends on them
    makes the restore fail (and roll back) instead of being dropped with them.
    """
    logical_dir = Path(logical_dir)
    spec = validate_logical_spec(logical_dir)
    counts = {}
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        q_schema = quote(schema)
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {q_schema}"))
        conn.execute(text(f"SET LOCAL search_path TO {q_schema}"))
        if spec["tables"]:
            conn.execute(text("DROP TABLE IF EXISTS " + ", ".join(f"{q_schema}.{quote(t['name'])}" for t in spec["tables"])))
        for table in spec["tables"]:
            defs = []
            for col in table["columns"]:
                col_type = col["type"]
                if col["identity"]:
                    col_type += " GENERATED BY DEFAULT AS IDENTITY"
                defs.append(f"{quote(col['name'])} {col_type}{'' if col['nullable'] else ' NOT NULL'}")
            if table["primary_key"]:
                defs.append(f"PRIMARY KEY ({', '.join(quote(c) for c in table['primary_key'])})")
            for unique in table.get("unique", []):
                defs.append(f"CONSTRAINT {quote(unique['name'])} UNIQUE ({', '.join(quote(c) for c in unique['columns'])})")
            conn.execute(text(f"CREATE TABLE {q_schema}.{quote(table['name'])} ({', '.join(defs)})"))
            unique_names = {u["name"] for u in table.get("unique", [])}
            for index in table.get("indexes", []):
                if index["name"] in unique_names:
                    continue
                conn.execute(
                    text(
                        f"CREATE {'UNIQUE ' if index['unique'] else ''}INDEX IF NOT EXISTS {quote(index['name'])} "
                        f"ON {q_schema}.{quote(table['name'])} ({', '.join(quote(c) for c in index['columns'])})"
                    )
                )
        meta = MetaData(schema=schema)
        for table in spec["tables"]:
            target = Table(table["name"], meta, autoload_with=conn)
            rows = 0
            with open(logical_dir / f"{table['name']}.jsonl") as handle:
                columns = json.loads(handle.readline())["columns"]
                batch = []
                for line in handle:
                    values = json.loads(line)
                    if not isinstance(values, list) or len(values) != len(columns):
                        raise UntrustedDumpError(f"database/logical/{table['name']}.jsonl line {rows + len(batch) + 2} "
                                                 "does not hold one value per column")
                    batch.append(dict(zip(columns, (decode_value(v) for v in values))))
                    if len(batch) >= 1000:
                        conn.execute(target.insert(), batch)
                        rows += len(batch)
                        batch = []
                if batch:
                    conn.execute(target.insert(), batch)
                    rows += len(batch)
            counts[table["name"]] = rows
            for col in table["columns"]:
                if col["identity"] and rows:
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence(:t, :c), (SELECT max({quote(col['name'])}) FROM {q_schema}.{quote(table['name'])}))"
                        ),
                        {"t": f"{q_schema}.{quote(table['name'])}", "c": col["name"]},
                    )
    return counts
