import pytest

from xbyol.registry import Registry


def test_register_create_and_names():
    r = Registry("thing")

    @r.register("b")
    def make_b(x=1):
        """Makes b."""
        return ("b", x)

    r.register("a", doc="an a")(lambda: "a")
    assert r.names() == ["a", "b"]
    assert r.create("b", x=3) == ("b", 3)
    assert r.doc("b") == "Makes b." and r.doc("a") == "an a"
    assert "a" in r and "c" not in r


def test_unknown_and_duplicate_names_are_errors():
    r = Registry("backbone")
    r.register("x")(lambda: 1)
    with pytest.raises(KeyError, match="unknown backbone 'y'; available: x"):
        r.create("y")
    with pytest.raises(ValueError, match="already registered"):
        r.register("x")(lambda: 2)


def test_public_lookup_listing_and_replace():
    r = Registry("method")

    def one():
        return 1

    r.register("one")(one)
    r.register("two")(lambda: 2)
    assert r.get("one") is one
    assert [name for name, _ in r.items()] == ["one", "two"] and r.items()[0][1] is one
    with pytest.raises(KeyError, match="unknown method 'three'; available: one, two"):
        r.get("three")
    r.register("one", replace=True)(lambda: 11)
    assert r.create("one") == 11


def test_check_keeps_order_drops_duplicates_and_names_the_unknown():
    r = Registry("explainer")
    for name in ("a", "b", "c"):
        r.register(name)(dict)
    assert r.check([" c", "a", "c", "", "b "]) == ["c", "a", "b"]
    with pytest.raises(ValueError, match=r"^unknown explainer\(s\) 'x', 'y'; available: a, b, c$"):
        r.check(["a", "x", "y"])
    with pytest.raises(ValueError, match="^no explainer given; available: a, b, c$"):
        r.check([" "])
