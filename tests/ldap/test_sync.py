"""sync_patron: replicate / update into borrowers after a real LDAP bind (§6.3 steps 4-6).

Every test authenticates against the test slapd and writes into a real database (SQLite, and
PostgreSQL when a cluster can be started).
"""

from __future__ import annotations

import datetime
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from koha_gateway.auth.ldap import LdapDirectory, LdapOutcome, LdapResult
from koha_gateway.auth.passwords import hash_password, verify_password
from koha_gateway.config.ldap import LdapConfig
from koha_gateway.db import schema
from koha_gateway.db.engine import Database
from koha_gateway.ils.ldap_sync import sync_patron
from tests.ldap.conftest import PASSWORDS, PEOPLE
from tests.ldap.slapd import SUFFIX

MAPPING = {
    "userid": ("uid", None),
    "cardnumber": ("employeeNumber", None),
    "surname": ("sn", None),
    "firstname": ("givenName", None),
    "email": ("mail", None),
    "phone": ("telephoneNumber", None),
    "city": ("l", "Athens, OH"),
    "zipcode": ("postalCode", None),
    "branchcode": ("departmentNumber", "WEL"),
    "categorycode": ("employeeType", "PT"),
    "password": ("userPassword", None),
    "DEPT": ("departmentNumber", None),
    "LANG": ("businessCategory", None),
}


def _seed(txn):
    schema.migrate(txn)
    for code, name in (("WEL", "Wellington"), ("KIL", "Kilbirnie")):
        txn.execute("INSERT INTO branches (branchcode, branchname) VALUES (?, ?)", (code, name))
    for code, months in (("PT", 24), ("S", None), ("ST", 12)):
        txn.execute(
            "INSERT INTO categories (categorycode, description, enrolmentperiod) VALUES (?, ?, ?)",
            (code, code, months),
        )
    txn.execute(
        "INSERT INTO borrower_attribute_types (code, description, repeatable) VALUES (?, ?, ?)",
        ("DEPT", "Department", 0),
    )
    txn.execute(
        "INSERT INTO borrower_attribute_types (code, description, repeatable) VALUES (?, ?, ?)",
        ("LANG", "Languages", 1),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ldap.sqlite'}"
    else:
        from tests.support.postgres import cluster_or_skip

        url = cluster_or_skip().create_database()
    database = Database.from_url(url)
    database.run_blocking(_seed)
    yield database
    database.close()


def config(slapd, **settings) -> LdapConfig:
    settings.setdefault("mapping", MAPPING)
    return LdapConfig(hosts=(slapd.url,), base=SUFFIX, **settings)


#: The instant the syncs below run at (dateenrolled, dateexpiry, updated_on).
NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


def sync(db, result, password, cfg):
    """What the authenticator does: hash first, then sync in one transaction."""
    password_hash = hash_password(password) if cfg.update_password else None
    return db.run_blocking(sync_patron, result, cfg, password_hash=password_hash, now=NOW)


def login(slapd, userid, password=None, **settings):
    cfg = config(slapd, **settings)
    result = LdapDirectory(cfg).authenticate(userid, password or PASSWORDS[userid])
    assert result.outcome is LdapOutcome.OK, result.reason
    return cfg, result


def borrower(db, **where):
    ((column, value),) = where.items()
    return db.run_blocking(
        lambda txn: txn.one(f"SELECT * FROM borrowers WHERE {column} = ?", (value,))
    )


def attributes(db, number):
    rows = db.run_blocking(
        lambda txn: txn.query(
            "SELECT code, attribute FROM borrower_attributes WHERE borrowernumber = ? "
            "ORDER BY code, attribute",
            (number,),
        )
    )
    return [(r["code"], r["attribute"]) for r in rows]


def test_replicate_creates_the_borrower(db, slapd):
    cfg, result = login(slapd, "jdoe")
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    row = borrower(db, borrowernumber=number)
    assert row["userid"] == "jdoe"
    assert row["cardnumber"] == "23529000000101"
    assert (row["firstname"], row["surname"]) == ("John", "Doe")
    assert row["email"] == "jdoe@example.org"
    assert row["phone"] == "+1 555 0100"
    assert row["city"] == "Springfield"
    assert row["zipcode"] == "12345"
    # departmentNumber HISTORY is no branch: the mapping default WEL is used.
    assert row["branchcode"] == "WEL"
    # employeeType "patron" is no category: the mapping default PT is used (Koha).
    assert row["categorycode"] == "PT"
    today = NOW.date()
    assert str(row["dateenrolled"])[:10] == today.isoformat()
    expiry = datetime.date.fromisoformat(str(row["dateexpiry"])[:10])
    assert 729 <= (expiry - today).days <= 731  # PT: 24 months
    # No circulate permission unless the mapping or the configuration says so.
    assert row["flags"] == 0
    # update_password: a bcrypt hash of the LDAP password, never LDAP's userPassword.
    assert row["password"].startswith("$2")
    assert verify_password(PASSWORDS["jdoe"], row["password"])
    # Extended patron attributes from the mapping.
    assert attributes(db, number) == [("DEPT", "HISTORY")]


def test_mapping_default_when_the_entry_has_no_value(db, slapd):
    cfg, result = login(slapd, "asmith")
    number = sync(db, result, PASSWORDS["asmith"], cfg)
    row = borrower(db, borrowernumber=number)
    assert row["city"] == "Athens, OH"
    assert row["phone"] is None


def test_categorycode_mapping(db, slapd):
    categories = {"student": "ST", "staff": "S"}
    cfg, result = login(slapd, "asmith", categorycode_mapping=categories)
    number = sync(db, result, PASSWORDS["asmith"], cfg)
    row = borrower(db, borrowernumber=number)
    assert row["categorycode"] == "ST"
    expiry = datetime.date.fromisoformat(str(row["dateexpiry"])[:10])
    assert 364 <= (expiry - NOW.date()).days <= 366  # ST: 12 months
    # An unlisted value takes the default attribute of <categorycode_mapping>.
    cfg, result = login(slapd, "jdoe", categorycode_mapping=categories, categorycode_default="S")
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    assert borrower(db, borrowernumber=number)["categorycode"] == "S"


def test_unknown_category_falls_back_to_the_mapping_default(db, slapd):
    cfg, result = login(
        slapd, "jdoe", categorycode_mapping={"student": "ST"}, categorycode_default="GONE"
    )
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    assert borrower(db, borrowernumber=number)["categorycode"] == "PT"


def test_update_syncs_changed_attributes(db, slapd):
    cfg, result = login(slapd, "asmith")
    number = sync(db, result, PASSWORDS["asmith"], cfg)
    slapd.replace(f"uid=asmith,{PEOPLE}", sn="Smith-Jones", mail="alice@example.net")
    try:
        cfg, result = login(slapd, "asmith")
        assert sync(db, result, PASSWORDS["asmith"], cfg) == number
        row = borrower(db, borrowernumber=number)
        assert row["surname"] == "Smith-Jones"
        assert row["email"] == "alice@example.net"
    finally:
        slapd.replace(f"uid=asmith,{PEOPLE}", sn="Smith", mail="asmith@example.org")


def test_update_off_changes_nothing(db, slapd):
    cfg, result = login(slapd, "jdoe")
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    db.run_blocking(
        lambda txn: txn.execute(
            "UPDATE borrowers SET surname = 'Local', password = NULL WHERE borrowernumber = ?",
            (number,),
        )
    )
    cfg, result = login(slapd, "jdoe", update=False)
    assert sync(db, result, PASSWORDS["jdoe"], cfg) == number
    row = borrower(db, borrowernumber=number)
    assert row["surname"] == "Local"
    assert row["password"] is None


def test_update_password(db, slapd):
    cfg, result = login(slapd, "jdoe", update_password=False)
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    assert borrower(db, borrowernumber=number)["password"] is None
    cfg, result = login(slapd, "jdoe")
    sync(db, result, PASSWORDS["jdoe"], cfg)
    stored = borrower(db, borrowernumber=number)["password"]
    assert verify_password(PASSWORDS["jdoe"], stored)
    # Each login stores a fresh hash.
    sync(db, result, PASSWORDS["jdoe"], cfg)
    again = borrower(db, borrowernumber=number)["password"]
    assert again != stored and verify_password(PASSWORDS["jdoe"], again)


def test_replicate_off_returns_none(db, slapd):
    cfg, result = login(slapd, "jdoe", replicate=False)
    assert sync(db, result, PASSWORDS["jdoe"], cfg) is None
    assert borrower(db, userid="jdoe") is None


def test_existing_borrower_found_by_cardnumber_and_case(db, slapd):
    def add(txn):
        return txn.insert(
            "INSERT INTO borrowers (cardnumber, userid, surname, branchcode, categorycode, flags) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("23529000000101", "john.doe", "Old", "KIL", "S", 2),
        )

    number = db.run_blocking(add)
    cfg, result = login(slapd, "JDOE", PASSWORDS["jdoe"])  # LDAP ignores case
    assert sync(db, result, PASSWORDS["jdoe"], cfg) == number
    row = borrower(db, borrowernumber=number)
    assert row["userid"] == "jdoe"  # the directory's spelling
    assert row["surname"] == "Doe"
    assert row["flags"] == 2  # never removed


def test_circulate_permission(db, slapd):
    cfg, result = login(slapd, "kiosk1", grant_circulate=True)
    number = sync(db, result, PASSWORDS["kiosk1"], cfg)
    assert borrower(db, borrowernumber=number)["flags"] & 2
    # Koha's way: a "flags" mapping (here a default value).
    mapping = dict(MAPPING, flags=(None, "2"))
    cfg, result = login(slapd, "asmith", mapping=mapping)
    number = sync(db, result, PASSWORDS["asmith"], cfg)
    assert borrower(db, borrowernumber=number)["flags"] == 2


def test_borrower_found_by_the_mapped_cardnumber(db, slapd):
    def add(txn):
        return txn.insert(
            "INSERT INTO borrowers (cardnumber, userid, surname, branchcode, categorycode) "
            "VALUES (?, ?, ?, ?, ?)",
            ("23529000000102", "someone-else", "Else", "WEL", "PT"),
        )

    other = db.run_blocking(add)
    cfg, result = login(slapd, "asmith")
    # asmith's employeeNumber is the other borrower's card: that borrower is asmith (Koha
    # matches by cardnumber) and is updated.
    assert sync(db, result, PASSWORDS["asmith"], cfg) == other
    row = borrower(db, borrowernumber=other)
    assert (row["userid"], row["surname"]) == ("asmith", "Smith")


def test_unique_values_of_another_borrower_are_not_taken(db, slapd):
    def add(txn):
        sql = (
            "INSERT INTO borrowers (cardnumber, userid, surname, branchcode, categorycode) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        mine = txn.insert(sql, ("LOCAL-1", "asmith", "Smith", "WEL", "PT"))
        other = txn.insert(sql, ("23529000000102", "other", "Other", "WEL", "PT"))
        return mine, other

    mine, other = db.run_blocking(add)
    cfg, result = login(slapd, "asmith")
    assert sync(db, result, PASSWORDS["asmith"], cfg) == mine
    assert borrower(db, borrowernumber=mine)["cardnumber"] == "LOCAL-1"
    assert borrower(db, borrowernumber=other)["cardnumber"] == "23529000000102"


def test_replicate_needs_a_valid_category(db, slapd):
    mapping = dict(MAPPING, categorycode=("employeeType", "NOPE"))
    cfg, result = login(slapd, "jdoe", mapping=mapping)
    assert sync(db, result, PASSWORDS["jdoe"], cfg) is None
    assert borrower(db, userid="jdoe") is None


def test_extended_attributes_replace_only_mapped_codes(db, slapd):
    cfg, result = login(slapd, "jdoe")
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    db.run_blocking(
        lambda txn: txn.execute(
            "INSERT INTO borrower_attribute_types (code, repeatable) VALUES ('OTHER', 0)"
        )
    )
    db.run_blocking(
        lambda txn: txn.execute(
            "INSERT INTO borrower_attributes (borrowernumber, code, attribute) "
            "VALUES (?, 'OTHER', 'kept')",
            (number,),
        )
    )
    slapd.replace(f"uid=jdoe,{PEOPLE}", departmentNumber="MATHS", businessCategory=["en", "mi"])
    try:
        cfg, result = login(slapd, "jdoe")
        sync(db, result, PASSWORDS["jdoe"], cfg)
    finally:
        admin = slapd.admin()
        from ldap3 import MODIFY_DELETE, MODIFY_REPLACE

        admin.modify(
            f"uid=jdoe,{PEOPLE}",
            {
                "departmentNumber": [(MODIFY_REPLACE, ["HISTORY"])],
                "businessCategory": [(MODIFY_DELETE, [])],
            },
        )
        admin.unbind()
    assert attributes(db, number) == [
        ("DEPT", "MATHS"),
        ("LANG", "en"),
        ("LANG", "mi"),
        ("OTHER", "kept"),
    ]


def test_not_ok_results_are_never_synced(db):
    cfg = LdapConfig(hosts=("ldap://h",), base=SUFFIX, mapping=MAPPING)
    for outcome in (LdapOutcome.REJECTED, LdapOutcome.NOT_HANDLED):
        result = LdapResult(outcome, "jdoe", {"uid": ["jdoe"]}, "x")
        assert sync(db, result, "pw", cfg) is None
    assert borrower(db, userid="jdoe") is None


def test_ldap_dates(db, slapd):
    mapping = dict(MAPPING, dateexpiry=(None, "20301231000000Z"))
    cfg, result = login(slapd, "jdoe", mapping=mapping)
    number = sync(db, result, PASSWORDS["jdoe"], cfg)
    assert str(borrower(db, borrowernumber=number)["dateexpiry"])[:10] == "2030-12-31"


def test_simultaneous_first_logins_create_one_borrower(db, slapd):
    cfg, result = login(slapd, "jdoe")
    barrier = threading.Barrier(4)

    def first_login():
        barrier.wait()
        return sync(db, result, PASSWORDS["jdoe"], cfg)

    with ThreadPoolExecutor(max_workers=4) as pool:
        numbers = list(pool.map(lambda _: first_login(), range(4)))
    assert len(set(numbers)) == 1 and numbers[0] is not None
    count = db.run_blocking(
        lambda txn: txn.scalar("SELECT COUNT(*) FROM borrowers WHERE userid = 'jdoe'")
    )
    assert count == 1
