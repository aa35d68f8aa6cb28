"""The check counters of the deployment and README test scripts in Python
(container_recipe_check.py, readme_commands_check.py): each check prints
"ok: WHAT" or "FAIL: WHAT" with what went wrong, and summary() prints
"N passed, N failed" and gives the exit status (0 only when none failed and
some passed)."""
passed = failed = 0


def check(what, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok: " + what)
    else:
        failed += 1
        print("FAIL: " + what + ("\n  " + str(detail).replace("\n", "\n  ") if detail else ""))
    return ok


def placed(what):
    """A check made elsewhere, named here: counted as passed."""
    return check(what, True)


def summary():
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1
