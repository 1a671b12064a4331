#!/usr/bin/env python3
"""Differential test of the C chat-template interpreter against Python jinja2.

    compare.py features CASES.json RENDER_BIN
    compare.py hub HUB_DIR CONVERSATIONS.json RENDER_BIN

"features": CASES.json is a list of {"name", "t" (template), "v" (variables, optional)};
each is rendered by render.py's environment and by RENDER_BIN (test_jinja_render), and the
bytes must be equal; when Python fails, the C side must fail too.

"hub": for each HUB_DIR/<model>/tokenizer_config.json named in CONVERSATIONS.json
("templates"), every conversation ("conversations": {"name", "vars", "only"?}) is rendered
with the config's bos_token and eos_token added, the way apply_chat_template passes them.

"templates": every *.jinja file of TEMPLATE_DIR against every conversation, for the real
templates that no package registry carries, committed in tests/chat/templates (gpt-oss,
Qwen3-Coder, Mistral Small 3.2, Devstral, GLM, DeepSeek-V3.1, Kimi K2, LFM2.5, Granite 3.3,
Gemma 4; SOURCES.md names where each came from). Any
checkpoint's chat_template.jinja can be checked the same way from another directory.

    compare.py templates TEMPLATE_DIR CONVERSATIONS.json RENDER_BIN

Exit codes: 0 all equal, 1 a difference (or missing data in CI), 77 skipped (data or
jinja2 missing outside CI; CELLM_CI=1 turns a skip into a failure).
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77


def skip_or_fail(why):
    if os.environ.get("CELLM_CI") == "1":
        print("FAIL (CI): " + why)
        return 1
    print("SKIP: " + why)
    return SKIP


def c_render(binary, template_text, variables, tmpdir):
    tpath = os.path.join(tmpdir, "t.jinja")
    vpath = os.path.join(tmpdir, "v.json")
    with open(tpath, "w", encoding="utf-8", newline="") as f:
        f.write(template_text)
    with open(vpath, "w", encoding="utf-8") as f:
        json.dump(variables, f, ensure_ascii=False)
    p = subprocess.run([binary, tpath, vpath], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if p.returncode == 0:
        return True, p.stdout
    return False, p.stderr.decode("utf-8", "replace").strip()


def py_render(render, template_text, variables):
    try:
        return True, render(template_text, variables).encode("utf-8", "surrogatepass")
    except Exception as e:
        return False, "%s: %s" % (type(e).__name__, e)


def check(name, py, c):
    if py[0] and c[0] and py[1] == c[1]:
        return True
    if not py[0] and not c[0]:
        print("both fail %s\n  python: %s\n  c:      %s" % (name, py[1], c[1]))
        return True
    print("MISMATCH %s" % name)
    print("  python: %r" % (py[1][:2000],))
    print("  c:      %r" % (c[1][:2000],))
    return False


def main():
    try:
        sys.path.insert(0, HERE)
        import render as ref
    except ImportError as e:
        return skip_or_fail("python3 jinja2 is not available (%s)" % e)
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    failures = total = 0
    with tempfile.TemporaryDirectory() as tmpdir:
        if mode == "features" and len(sys.argv) == 4:
            with open(sys.argv[2], encoding="utf-8") as f:
                cases = json.load(f)
            binary = sys.argv[3]
            for case in cases:
                total += 1
                v = case.get("v", {})
                py = py_render(ref.render, case["t"], v)
                c = c_render(binary, case["t"], v, tmpdir)
                failures += not check(case["name"], py, c)
        elif mode == "hub" and len(sys.argv) == 5:
            hub, conv_path, binary = sys.argv[2], sys.argv[3], sys.argv[4]
            with open(conv_path, encoding="utf-8") as f:
                spec = json.load(f)
            missing = [m for m in spec["templates"]
                       if not os.path.exists(os.path.join(hub, m, "tokenizer_config.json"))]
            if missing:
                return skip_or_fail("chat templates missing under %s: %s (run "
                                    ".ci/setup.d/20-tokenizers.sh)" % (hub, ", ".join(missing)))
            for model in spec["templates"]:
                cfg_path = os.path.join(hub, model, "tokenizer_config.json")
                text = ref.load_template(cfg_path)
                with open(cfg_path, encoding="utf-8") as f:
                    cfg = json.load(f)
                tokens = {}
                for key in ("bos_token", "eos_token"):
                    tok = cfg.get(key)
                    if isinstance(tok, dict):
                        tok = tok.get("content")
                    if tok is not None:
                        tokens[key] = tok
                for conv in spec["conversations"]:
                    if "only" in conv and model not in conv["only"]:
                        continue
                    total += 1
                    v = dict(tokens)
                    v.update(conv["vars"])
                    py = py_render(ref.render, text, v)
                    c = c_render(binary, text, v, tmpdir)
                    failures += not check("%s/%s" % (model, conv["name"]), py, c)
        elif mode == "templates" and len(sys.argv) == 5:
            # any template files: every conversation, no "only" filter (a template that
            # cannot take a conversation must fail in C exactly when it fails in Python)
            tdir, conv_path, binary = sys.argv[2], sys.argv[3], sys.argv[4]
            with open(conv_path, encoding="utf-8") as f:
                spec = json.load(f)
            names = sorted(n for n in os.listdir(tdir) if n.endswith(".jinja"))
            if not names:
                return skip_or_fail("no *.jinja under %s" % tdir)
            for name in names:
                text = ref.load_template(os.path.join(tdir, name))
                for conv in spec["conversations"]:
                    total += 1
                    v = {"bos_token": "<s>", "eos_token": "</s>"}
                    v.update(conv["vars"])
                    py = py_render(ref.render, text, v)
                    c = c_render(binary, text, v, tmpdir)
                    failures += not check("%s/%s" % (name, conv["name"]), py, c)
        else:
            print(__doc__)
            return 2
    print("%d of %d cases equal" % (total - failures, total))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
