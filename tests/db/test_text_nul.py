"""A NUL in a text parameter: PostgreSQL cannot store it, so the engine drops it."""


def test_nul_in_a_parameter_is_dropped_consistently(db):
    def work(txn):
        txn.execute("CREATE TABLE t (v TEXT)")
        txn.execute("INSERT INTO t (v) VALUES (?)", ("a\x00b",))
        found = txn.one("SELECT v FROM t WHERE v = ?", ("a\x00b",))
        return txn.scalar("SELECT v FROM t"), found

    stored, found = db.run_blocking(work)
    if db.engine.name == "postgresql":
        assert stored == "ab" and found == {"v": "ab"}
    else:
        assert stored == "a\x00b" and found == {"v": "a\x00b"}
