"""Reads a Modelfile the way Ollama does (parser/parser.go, ParseFile):
commands are NAME VALUE; a value runs to the first line end at which the
text so far, trimmed, is complete (a bare word, "..." or \"\"\"...\"\"\"),
and only the outer quotes are removed: there are no escapes. Written from
that description for the tests; returns [(name, value)] with FROM as
"model" and PARAMETER lines as their own key, as Ollama's Command does."""

COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer",
            "parser", "parameter", "message", "requires"}


class ParseError(Exception):
    pass


def _unquote(s):
    if s[:3] == '"""':
        if len(s) >= 6 and s[-3:] == '"""':
            return s[3:-3], True
        return "", False
    if s[:1] == '"':
        if len(s) >= 2 and s[-1] == '"':
            return s[1:-1], True
        return "", False
    return s, True


def parse(text):
    cmds, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "#":
            while i < n and text[i] not in "\r\n":
                i += 1
            continue
        j = i
        while j < n and text[j].isascii() and text[j].isalpha():
            j += 1
        name = text[i:j].lower()
        if name not in COMMANDS or j >= n or text[j] not in " \t":
            raise ParseError("bad command at offset %d: %r" % (i, text[i:j + 10]))
        i = j + 1
        if name == "parameter":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j >= n or text[j] not in " \t":
                raise ParseError("bad parameter at offset %d" % i)
            name, i = text[i:j], j + 1
        buf = ""
        while True:
            if i >= n:
                value, ok = _unquote(buf.strip())
                if not ok:
                    raise ParseError("unterminated value of %s" % name)
                break
            c = text[i]
            i += 1
            if c in "\r\n":
                value, ok = _unquote(buf.strip())
                if ok:
                    break
            buf += c
        cmds.append(("model" if name == "from" else name, value))
    if not any(name == "model" for name, _ in cmds):
        raise ParseError("no FROM line")
    return cmds
