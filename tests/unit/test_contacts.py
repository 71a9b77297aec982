"""Contacts: E.164 normalisation (the fast NANP path agrees with phonenumbers),
CSV import with damaged rows, bad numbers, duplicates and wrong encodings,
and export with campaign results (a round trip)."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.contacts
from engine.errors import BadRequest
from engine.store import InvalidNumber, PhoneNormalizer, Store
from engine.store.phones import reference_normalize

NANP_REGIONS = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


def ours(raw: str, region: str = "US") -> str | None:
    try:
        return PhoneNormalizer(region).normalize(raw)
    except InvalidNumber:
        return None


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ------------------------------------------------------------ normalisation

SHAPES = (
    lambda d: d,
    lambda d: f"({d[:3]}) {d[3:6]}-{d[6:]}",
    lambda d: f"+1{d}",
    lambda d: f"+1 {d[:3]}-{d[3:6]}-{d[6:]}",
    lambda d: f"1-{d[:3]}-{d[3:6]}-{d[6:]}",
    lambda d: f"1{d}",
    lambda d: f"{d[:3]}.{d[3:6]}.{d[6:]}",
    lambda d: f"  {d[:3]} {d[3:6]} {d[6:]} ",
    lambda d: f"{d[:3]}) {d[3:6]}-{d[6:]}",  # odd punctuation: both must agree anyway
)


def test_fast_path_agrees_with_phonenumbers_on_random_numbers() -> None:
    rnd = random.Random(20240501)
    normalizer = PhoneNormalizer("US")
    fast = valid = 0
    for _ in range(60_000):
        digits = "".join(rnd.choice("0123456789") for _ in range(10))
        raw = rnd.choice(SHAPES)(digits)
        fast += normalizer._nanp_national(raw) is not None
        got = ours(raw)
        valid += got is not None
        assert got == reference_normalize(raw, "US"), raw
    assert fast > 40_000 and 10_000 < valid < 50_000  # both paths and both answers exercised


def test_fast_path_agrees_around_every_nanp_regions_numbers() -> None:
    """Numbers near each NANP region's example numbers (Canada, Caribbean,
    toll free, premium...): where the region rules differ, not just the US."""
    rnd = random.Random(7)
    seen = 0
    for region in NANP_REGIONS:
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = str(example.national_number)
            for _ in range(60):
                cut = rnd.randint(3, 9)
                digits = nsn[:cut] + "".join(rnd.choice("0123456789") for _ in range(10 - cut))
                for raw in (digits, f"+1 {digits}", f"({digits[:3]}) {digits[3:]}"):
                    assert ours(raw) == reference_normalize(raw, "US"), raw
                    seen += 1
    assert seen > 3_000


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="0123456789 -.()+", min_size=7, max_size=18),
    st.sampled_from(["US", "CA", "GB", "FR", "JM"]),
)
def test_any_digit_soup_agrees_with_phonenumbers(raw: str, region: str) -> None:
    assert ours(raw, region) == reference_normalize(raw, region)


def test_other_countries_take_the_full_parser() -> None:
    assert ours("020 7946 0018", "GB") == "+442079460018"
    assert ours("+33 1 42 68 53 00") == "+33142685300"
    assert ours("2125550100", "GB") is None  # not a GB number
    assert ours("+1 212 555 0100", "GB") == "+12125550100"
    with pytest.raises(BadRequest, match="region"):
        PhoneNormalizer("XX")


# ------------------------------------------------------------------ import


async def test_import_reports_each_bad_row_and_goes_on(tmp_path: Path, store: Store) -> None:
    await store.add_contact("l1", ["+12125550199"])  # already in the list
    src = write(
        tmp_path / "in.csv",
        "id,name,Phone,Mobile Number,zip\n"  # 1
        "a1,Ann,212-555-0100,,10001\n"  # 2 ok
        "a2,Bob,(212) 555-0101,+1 646 555 0102,10002\n"  # 3 ok, two numbers
        "a3,Cy,555-01,,10003\n"  # 4 invalid number, no other
        "a4,Di,212 555 0100,,10004\n"  # 5 duplicate of line 2
        "a5,Ed,2125550199,,10005\n"  # 6 duplicate: already in the list
        "a6,Fi,,,10006\n"  # 7 no number at all
        "a7,Gus,oops,646.555.0103,10007\n"  # 8 imported without the bad phone
        "a8,Hal,212 555 0104\n"  # 9 wrong column count
        "\n"  # 10 blank: ignored
        "a9,Ida,212 555 0105,,10009,extra\n"  # 11 wrong column count
        "b1,Jo,646 555 0102,,10010\n",  # 12 duplicate of line 3's mobile
    )
    summary = await store.import_contacts("l1", src)
    assert (
        summary.rows,
        summary.imported,
        summary.duplicates,
        summary.invalid,
        summary.warnings,
    ) == (10, 3, 3, 4, 1)
    assert summary.error_path == str(tmp_path / "in.errors.csv")
    rows = read_csv(tmp_path / "in.errors.csv")
    assert rows[0] == ["line", "reason", "id", "name", "Phone", "Mobile Number", "zip"]
    assert [(r[0], r[2]) for r in rows[1:]] == [
        ("4", "a3"),
        ("5", "a4"),
        ("6", "a5"),
        ("7", "a6"),
        ("8", "a7"),
        ("9", "a8"),
        ("11", "a9"),
        ("12", "b1"),
    ]
    reasons = {r[0]: r[1] for r in rows[1:]}
    assert "'555-01' is not a valid phone number" in reasons["4"]
    assert reasons["5"] == "duplicate: +12125550100 is also on line 2"
    assert reasons["6"] == "duplicate: +12125550199 is already in the list"
    assert reasons["7"] == "no phone number"
    assert reasons["8"].startswith("imported without column 'Phone'")
    assert reasons["9"] == "expected 5 columns, found 3"
    assert reasons["11"] == "expected 5 columns, found 6"
    assert reasons["12"] == "duplicate: +16465550102 is also on line 3"
    assert rows[-1][2:] == ["b1", "Jo", "646 555 0102", "", "10010"]  # the row as it was
    await store.upsert_campaign("c1", "l1", {})
    await store.sync_campaign_contacts("c1")
    from datetime import UTC, datetime

    due = await store.due_contacts("c1", datetime.now(UTC), 10)
    assert [d.phones for d in due] == [
        ("+12125550199",),
        ("+12125550100",),
        ("+12125550101", "+16465550102"),
        ("+16465550103",),
    ]
    assert due[1].attributes == {"name": "Ann", "zip": "10001"}  # id is the external id
    contact = await store.contact(due[2].contact_id)
    assert (contact["external_id"], contact["phone_columns"]) == ("a2", ["Phone", "Mobile Number"])


async def test_undecodable_bytes_and_broken_quotes_are_per_row(
    tmp_path: Path, store: Store
) -> None:
    src = tmp_path / "mixed.csv"
    src.write_bytes(
        b"name,phone\n"
        b"Ann,2125550100\n"  # 2
        b"B\xe9a,2125550101\n"  # 3: Latin-1 byte in a UTF-8 file
        b'"Cy,2125550102\n'  # 4: an unclosed quote swallows what follows...
        b"Di,2125550103\n"
        b"Ed,2125550104\n"
        b"Fi,2125550105\n"
    )
    summary = await store.import_contacts("l1", src)
    assert (summary.rows, summary.imported, summary.invalid) == (3, 1, 2)
    reasons = {r[0]: r[1] for r in read_csv(tmp_path / "mixed.errors.csv")[1:]}
    assert reasons["3"] == "undecodable bytes (not valid utf-8)"
    assert reasons["4"].startswith("expected 2 columns, found 1")
    assert "unclosed quote" in reasons["4"]


async def test_several_phone_columns_by_name_and_default_detection(
    tmp_path: Path, store: Store
) -> None:
    src = write(tmp_path / "p.csv", "home,cell,work phone\n2125550100,6465550101,7185550102\n")
    summary = await store.import_contacts("l1", src, phone_columns=["cell", "HOME"])
    assert summary.imported == 1
    (cand,) = await _due(store, "l1")
    assert cand.phones == ("+16465550101", "+12125550100")
    assert cand.attributes == {"work phone": "7185550102"}
    src2 = write(tmp_path / "q.csv", "home,cell,work phone\n2125550200,6465550201,7185550202\n")
    await store.import_contacts("l2", src2)  # default: headers with "phone" or "number"
    (cand,) = await _due(store, "l2")
    assert cand.phones == ("+17185550202",)
    with pytest.raises(BadRequest, match=r"no column 'fax'.*home, cell, work phone"):
        await store.import_contacts("l1", src, phone_columns=["fax"])
    no_phone = write(tmp_path / "n.csv", "name,zip\nAnn,10001\n")
    with pytest.raises(BadRequest, match=r"n\.csv: no phone column"):
        await store.import_contacts("l1", no_phone)


async def _due(store: Store, list_name: str) -> list:  # type: ignore[type-arg]
    from datetime import UTC, datetime

    await store.upsert_campaign(f"c-{list_name}", list_name, {})
    await store.sync_campaign_contacts(f"c-{list_name}")
    return await store.due_contacts(f"c-{list_name}", datetime.now(UTC), 100)


async def test_wrong_encodings_are_refused_naming_the_file(tmp_path: Path, store: Store) -> None:
    text = "name,phone\nZoë,2125550100\n"
    utf16 = write(tmp_path / "u16.csv", text, "utf-16")  # with its BOM
    with pytest.raises(BadRequest, match=r"u16\.csv: the file is UTF-16"):
        await store.import_contacts("l1", utf16)
    no_bom = write(tmp_path / "u16le.csv", text, "utf-16-le")
    with pytest.raises(BadRequest, match=r"u16le\.csv: line 1 contains NUL bytes"):
        await store.import_contacts("l1", no_bom)
    latin = write(tmp_path / "latin.csv", "nom Zoë,phone\nZoë,2125550100\n", "latin-1")
    with pytest.raises(BadRequest, match=r"latin\.csv: line 1 is not valid utf-8"):
        await store.import_contacts("l1", latin)
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(BadRequest, match=r"empty\.csv: the file is empty"):
        await store.import_contacts("l1", empty)
    with pytest.raises(BadRequest, match="unknown encoding"):
        await store.import_contacts("l1", latin, encoding="klingon")
    assert await store.lists() == []  # nothing was created by the refused files
    # named encodings work, UTF-16 included
    assert (await store.import_contacts("l1", latin, encoding="latin-1")).imported == 1
    assert (await store.import_contacts("l2", utf16, encoding="utf-16")).imported == 1
    (cand,) = await _due(store, "l1")
    assert cand.attributes == {"nom Zoë": "Zoë"}


async def test_excel_habits_bom_and_semicolons(tmp_path: Path, store: Store) -> None:
    src = write(tmp_path / "x.csv", "\ufeffname;phone\r\nAnn;212 555 0100\r\n;;\r\n")
    summary = await store.import_contacts("l1", src)
    assert (summary.rows, summary.imported, summary.error_path) == (1, 1, None)
    assert not (tmp_path / "x.errors.csv").exists()  # a clean import leaves no error file
    (cand,) = await _due(store, "l1")
    assert cand.attributes == {"name": "Ann"}


async def test_a_failed_import_loses_nothing_already_stored(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = write(tmp_path / "good.csv", "name,phone\nAnn,2125550100\nBob,2125550101\n")
    await store.import_contacts("l1", good)
    before = await _contacts(store, "l1")
    # a file refused at its start
    with pytest.raises(BadRequest):
        await store.import_contacts("l1", write(tmp_path / "b.csv", "name,phone\n", "utf-16"))
    # a file that breaks half-way: UTF-16 ending in half a surrogate pair, far
    # enough in that several batches were committed before the decoder fails
    monkeypatch.setattr(engine.contacts, "BATCH_ROWS", 50)
    rows = "".join(f"P{i},646555{i:04d}\n" for i in range(1000))
    broken = tmp_path / "broken.csv"
    broken.write_bytes(("name,phone\n" + rows).encode("utf-16") + b"\x00\xd8\x41")
    with pytest.raises(BadRequest, match=r"broken\.csv: not valid utf-16 after line \d+"):
        await store.import_contacts("l1", broken, encoding="utf-16")
    after = await _contacts(store, "l1")
    assert {k: after[k] for k in before} == before  # the first import's contacts are intact
    partial = {k: v for k, v in after.items() if k not in before}
    assert partial and all(len(v) == 1 for v in partial.values())  # whole contacts only
    # importing the first file again changes nothing: all duplicates
    again = await store.import_contacts("l1", good)
    assert (again.imported, again.duplicates) == (0, 2)
    assert await _contacts(store, "l1") == after


async def _contacts(store: Store, list_name: str) -> dict[str, tuple[str, ...]]:
    path = Path(store.url.removeprefix("sqlite:///")).with_suffix(".export.csv")
    await store.export_list(list_name, path)
    rows = read_csv(path)
    header = rows[0]
    return {r[header.index("name")]: (r[header.index("phone")],) for r in rows[1:]}


async def test_a_large_import_keeps_the_file_order_across_batches(
    tmp_path: Path, store: Store
) -> None:
    """Several batches, one transaction each; the order of the file is kept."""
    lines = ["id,phone"] + [f"x{i},+1 212 55{i // 10000:1d} {i % 10000:04d}" for i in range(12_000)]
    src = write(tmp_path / "big.csv", "\n".join(lines) + "\n")
    summary = await store.import_contacts("big", src)
    assert (summary.rows, summary.imported, summary.invalid) == (12_000, 12_000, 0)
    (first,) = (await _due(store, "big"))[:1]
    contact = await store.contact(first.contact_id)
    assert contact["external_id"] == "x0"


# ------------------------------------------------------------------ export


async def test_export_round_trip_with_latest_campaign_results(tmp_path: Path, store: Store) -> None:
    src = write(
        tmp_path / "in.csv",
        "id,name,state,phone,mobile\n"
        "a1,Ann,NY,212 555 0100,646 555 0100\n"
        "a2,Bob,NJ,212 555 0101,\n"
        "a3,Cy,,212 555 0102,\n",
    )
    await store.import_contacts("l1", src, phone_columns=["phone", "mobile"])
    await store.upsert_campaign("old", "l1", {})
    await store.upsert_campaign("new", "l1", {})
    for name in ("old", "new"):
        await store.sync_campaign_contacts(name)
    from datetime import UTC, datetime

    due = await store.due_contacts("old", datetime.now(UTC), 10)
    ann, bob, cy = (d.contact_id for d in due)
    store.set_contact_state("old", ann, state="done", last_result="answered", attempts_delta=1)
    store.set_contact_state("old", bob, state="failed", last_result="busy", attempts_delta=3)
    await store.flush()
    store.set_contact_state("new", bob, state="skipped", skip_reason="do-not-contact")
    await store.flush()
    out = tmp_path / "out.csv"
    assert await store.export_list("l1", out) == 3
    rows = read_csv(out)
    assert rows[0] == [
        "contact_id",
        "external_id",
        "phone",
        "mobile",
        "name",
        "state",
        "campaign",
        "dial_state",
        "attempts",
        "last_result",
        "skip_reason",
    ]
    assert rows[1:] == [
        [
            str(ann),
            "a1",
            "+12125550100",
            "+16465550100",
            "Ann",
            "NY",
            "old",
            "done",
            "1",
            "answered",
            "",
        ],
        [
            str(bob),
            "a2",
            "+12125550101",
            "",
            "Bob",
            "NJ",
            "new",
            "skipped",
            "0",
            "",
            "do-not-contact",
        ],
        [str(cy), "a3", "+12125550102", "", "Cy", "", "new", "pending", "0", "", ""],
    ]
    # and back in: the same contacts, the status columns left out
    summary = await store.import_contacts("copy", out, phone_columns=["phone", "mobile"])
    assert summary.imported == 3
    again = tmp_path / "again.csv"
    await store.export_list("copy", again)
    copied = read_csv(again)
    assert copied[0] == rows[0]
    assert [r[1:6] for r in copied[1:]] == [r[1:6] for r in rows[1:]]
    assert all(r[6:] == ["", "", "", "", ""] for r in copied[1:])


async def test_export_of_an_unknown_list(tmp_path: Path, store: Store) -> None:
    from engine.errors import NotFound

    with pytest.raises(NotFound):
        await store.export_list("nope", tmp_path / "x.csv")
    assert not [name for name in os.listdir(tmp_path) if "x.csv" in name]  # no partial file
