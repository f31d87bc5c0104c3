"""``jacobian-bp check 'LATEX'`` and ``jacobian-bp targets`` (issue #14 item 5): exit codes and one-line errors."""
from jacobian_bp.cli import main


def test_check_exit_codes(capsys):
    assert main(["check", r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = A^\top B^\top"]) == 0
    assert "HOLDS" in capsys.readouterr().out
    # Matrix Cookbook (100) written as BA: wrong, diagnosed as a transpose
    assert main(["check", r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = B A", "--setting", "cookbook"]) == 1
    out = capsys.readouterr().out
    assert "FAILS" in out and "transpose" in out
    assert main(["-q", "check", r"\frac{\partial}{\partial x} x^\top A x = 2 A x"]) == 1  # symmetry assumed
    assert "symmetr" in capsys.readouterr().out


def test_check_bad_input_is_one_line_exit_2(capsys):
    assert main(["check", r"\frac{\partial}{\partial X} \input{/etc/passwd}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 1, column" in err and "Traceback" not in err
    assert main(["check"]) == 2
    assert main(["check", "--help"]) == 0
    assert "--setting" in capsys.readouterr().out


def test_main_help_lists_check_and_targets(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "check" in out and "targets" in out
    assert main(["targets"]) == 0
    assert "grad_W" in capsys.readouterr().out


def test_check_without_lark_is_a_usage_error(monkeypatch, capsys):
    """Without the optional extra ``judge`` (lark) the command says what to install: one line, exit 2."""
    import builtins

    real_import = builtins.__import__

    def no_lark(name, *a, **k):
        if name == "lark" or name.startswith("lark."):
            raise ImportError("No module named 'lark'")
        return real_import(name, *a, **k)

    import sys

    for mod in [m for m in sys.modules if m == "lark" or m.startswith("lark.")]:
        monkeypatch.delitem(sys.modules, mod)
    from jacobian_bp.claims import latex_grammar

    monkeypatch.setattr(latex_grammar, "_PARSER", None)  # the parser built by an earlier test
    monkeypatch.setattr(builtins, "__import__", no_lark)
    assert main(["check", r"\frac{\partial}{\partial X} \operatorname{tr}(A X) = A^\top"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "jacobian_bp[judge]" in err and "internal error" not in err
