#!/usr/bin/env python3
"""Render a chat template the way transformers' apply_chat_template does (the reference
for the C interpreter in src/template/jinja*.c).

    render.py TEMPLATE VARS.json

TEMPLATE is a template file or a tokenizer_config.json (its "chat_template", a string or
the list entry named "default"). Writes the rendering to stdout as UTF-8 bytes; on a
template error writes "ERROR <type>: <message>" to stderr and exits 1.

The environment follows transformers: a sandbox that forbids mutating lists and dicts,
trim_blocks and lstrip_blocks on, the loopcontrols extension, the {% generation %} tag
(transformers marks the assistant's tokens with it; it renders its body as a call block
does, in a scope of its own), a tojson filter that calls
json.dumps without ASCII escaping and keeps key order, and two globals: raise_exception
(raises a TemplateError with the given text) and strftime_now (formats the current local
time).
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox


class Generation(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: the body, rendered by a call block."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_body", [])
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def make_env():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, Generation])

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def load_template(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if not path.endswith(".json"):
        return text
    tmpl = json.loads(text)["chat_template"]
    if isinstance(tmpl, list):
        tmpl = next(t["template"] for t in tmpl if t.get("name") == "default")
    return tmpl


def render(source, variables):
    return make_env().from_string(source).render(**variables)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: render.py TEMPLATE VARS.json\n")
        return 2
    source = load_template(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        variables = json.load(f)
    try:
        out = render(source, variables)
    except Exception as e:  # any template failure is reported, not raised
        sys.stderr.write("ERROR %s: %s\n" % (type(e).__name__, e))
        return 1
    sys.stdout.buffer.write(out.encode("utf-8", "surrogatepass"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
