"""Property test of the ``?`` -> ``%s`` translation used for psycopg2 (koha_gateway.db.engine)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from koha_gateway.db.engine import qmark_to_pyformat


def _literal(text: str) -> tuple[str, str]:
    quoted = "'" + text.replace("'", "''") + "'"
    return quoted, quoted.replace("%", "%%")


_plain = st.text(alphabet="abcxyz0123456789 ,=()<>*._\n", max_size=8)
_segment = st.one_of(
    _plain.map(lambda t: (t, t)),
    st.just(("?", "%s")),
    st.just(("%", "%%")),
    st.text(alphabet="ab?%' ", max_size=6).map(_literal),
)


@given(st.lists(_segment, max_size=12))
@settings(max_examples=300, deadline=None)
def test_qmark_translation_property(segments):
    # (Adjacent literals read as one literal with a doubled quote: same translation.)
    source = "".join(s for s, _ in segments)
    assert qmark_to_pyformat(source) == "".join(t for _, t in segments)
