"""Pages parsed with the standard library's html.parser into a small tree, for the tests of
the HTML files (results.html, neighbours.html): parse_html(page) -> HtmlNode."""

from html.parser import HTMLParser


class HtmlNode:
    """An element of a page parsed with html.parser: tag, attributes, children, own text."""

    def __init__(self, tag: str, attrs: dict, parent: "HtmlNode | None" = None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[HtmlNode] = []
        self.parts: list = []  # text strings and child nodes, in document order

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list["HtmlNode"]:
        """Descendants (self included) with this tag whose attributes contain `attrs`.

        `class_` matches one class among the space-separated ones."""
        want_class = attrs.pop("class_", None)
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
            and (want_class is None or want_class in n.attrs.get("class", "").split())
        ]

    def find(self, tag: str | None = None, **attrs) -> "HtmlNode":
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag}> with {attrs}"
        return found[0]

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)


_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "wbr",
}


def parse_html(page: str) -> HtmlNode:
    """The document tree; fails on an end tag that does not close the open element."""
    root = HtmlNode("#document", {})

    class Builder(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.node = root

        def handle_starttag(self, tag, attrs):
            node = HtmlNode(tag, {k: ("" if v is None else v) for k, v in attrs}, self.node)
            self.node.children.append(node)
            self.node.parts.append(node)
            if tag not in _VOID:
                self.node = node

        def handle_startendtag(self, tag, attrs):
            self.handle_starttag(tag, attrs)
            if tag not in _VOID:
                self.node = self.node.parent

        def handle_endtag(self, tag):
            assert tag == self.node.tag, f"</{tag}> closes <{self.node.tag}>"
            self.node = self.node.parent

        def handle_data(self, data):
            self.node.parts.append(data)

        def handle_decl(self, decl):
            root.attrs["doctype"] = decl

    builder = Builder()
    builder.feed(page)
    builder.close()
    assert builder.node is root, f"<{builder.node.tag}> is never closed"
    return root
