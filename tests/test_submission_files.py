"""autograder/submission_files.py: which files are graded, and their UTF-8 copies.

Standard library only (unittest), so a bare Python 3.10 runs it too, as Gradescope's is:
`python3.10 -I tests/test_submission_files.py` (tests/test_messy.py does that when it finds one).
"""
import codecs
import os
import stat
import sys
import tempfile
import time
import unittest
import zipfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from autograder import submission_files as sf  # noqa: E402

IMPLEMENTED_UTILS = """import torch


def sample_gaussian(m, v):
    return m + torch.sqrt(v) * torch.randn_like(m + v)


def kl_normal(qm, qv, pm, pv):
    return 0.5 * (torch.log(pv / qv) + qv / pv + (qm - pm) ** 2 / pv - 1).sum(-1)
"""
IMPLEMENTED_VAE = """import utils as ut


class VAE:
    def negative_elbo_bound(self, x):
        return x, x, x
"""
STUB_UTILS = """def sample_gaussian(m, v):
    raise NotImplementedError("sample_gaussian is not implemented yet")


def kl_normal(qm, qv, pm, pv):
    raise NotImplementedError
"""
STUB_VAE = """class VAE:
    def negative_elbo_bound(self, x):
        raise NotImplementedError("not yet")
"""


class Folder:
    """A scratch submission folder: write(relative, text or bytes, age=seconds)."""

    def __init__(self):
        self._scratch = tempfile.TemporaryDirectory()
        self.root = Path(self._scratch.name)
        self.now = time.time()

    def write(self, relative, content, age=0):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        os.utime(path, (self.now - age, self.now - age))
        return path

    def close(self):
        self._scratch.cleanup()


class Case(unittest.TestCase):
    def setUp(self):
        self.folder = Folder()
        self.addCleanup(self.folder.close)

    def select(self):
        return sf.select(self.folder.root)

    def graded(self, selection):
        return {name: entry.shown for name, entry in selection.graded.items()}


class Decoding(unittest.TestCase):
    SOURCE = "x = 'café'  # naïve\nprint(x)\n"

    def check_compiles(self, text):
        compile(text.encode("utf-8"), "utils.py", "exec")      # as the sandbox will read the copy

    def test_utf8_with_and_without_bom_and_crlf(self):
        for data in (self.SOURCE.encode(), codecs.BOM_UTF8 + self.SOURCE.replace("\n", "\r\n").encode(),
                     self.SOURCE.replace("\n", "\r").encode()):
            text, notes = sf.decode_source(data, "utils.py")
            self.assertEqual(text, self.SOURCE)
            self.assertEqual(notes, [])

    def test_utf16_and_utf32_with_bom_are_converted_with_a_note(self):
        for codec, label in (("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")):
            data = self.SOURCE.encode(codec)
            if codec == "utf-16-be":
                data = codecs.BOM_UTF16_BE + data
            text, notes = sf.decode_source(data, "vae.py")
            self.assertEqual(text, self.SOURCE, codec)
            self.assertTrue(notes and label in notes[0] and "vae.py" in notes[0], notes)

    def test_utf16_without_bom_is_detected(self):
        for codec in ("utf-16-le", "utf-16-be"):
            text, notes = sf.decode_source(self.SOURCE.encode(codec), "vae.py")
            self.assertEqual(text, self.SOURCE)
            self.assertIn("without a byte-order mark", notes[0])

    def test_cp1252_comment_is_read_as_windows_1252_naming_line_and_byte(self):
        data = "a = 1\nb = 2\nc = 3  # l\u2019\u00e9l\u00e8ve\nprint(c)\n".encode("cp1252")
        # Python's verdict on such bytes depends on how and where they are read (a script or an
        # import, a comment or a string, the version); the copy the sandbox gets is plain UTF-8.
        text, notes = sf.decode_source(data, "utils.py")
        self.assertIn("\u2019\u00e9l\u00e8ve", text)
        self.check_compiles(text)
        self.assertIn("Windows-1252", notes[0])
        self.assertIn("line 3", notes[0])
        self.assertIn("0x92", notes[0])

    def test_bytes_cp1252_lacks_fall_back_to_latin1(self):
        text, notes = sf.decode_source(b"x = 1  # \x81\x8d\n", "utils.py")
        self.assertEqual(text, "x = 1  # \x81\x8d\n")
        self.assertIn("line 1", notes[0])

    def test_coding_line_is_honoured_and_rewritten_to_utf8(self):
        data = "# -*- coding: latin-1 -*-\ns = 'Ren\u00e9e'\n".encode("latin-1")
        text, notes = sf.decode_source(data, "utils.py")
        self.assertEqual(notes, [])
        self.assertEqual(text.splitlines()[0], "# -*- coding: utf-8 -*-")
        namespace = {}
        exec(compile(text.encode("utf-8"), "utils.py", "exec"), namespace)
        self.assertEqual(namespace["s"], "Ren\u00e9e")

    def test_coding_line_on_line_two_after_a_shebang(self):
        data = "#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\ns = '\u2019'\n".encode("cp1252")
        text, _ = sf.decode_source(data, "utils.py")
        self.assertIn("fileencoding=utf-8", text)
        self.assertIn("'\u2019'", text)

    def test_unknown_or_wrong_declared_encoding_is_a_problem_naming_it(self):
        with self.assertRaisesRegex(sf.SourceProblem, "'klingon'.*does not know"):
            sf.decode_source(b"# coding: klingon\nx = 1\n", "utils.py")
        with self.assertRaisesRegex(sf.SourceProblem, "not valid 'ascii'.*line 2"):
            sf.decode_source(b"# coding: ascii\nx = '\xe9'\n", "utils.py")

    def test_empty_whitespace_and_null_bytes_are_named(self):
        with self.assertRaisesRegex(sf.SourceProblem, r"vae.py is empty \(0 bytes\)"):
            sf.decode_source(b"", "vae.py")
        with self.assertRaisesRegex(sf.SourceProblem, "vae.py is empty .only whitespace"):
            sf.decode_source(b" \r\n\t\n", "vae.py")
        with self.assertRaisesRegex(sf.SourceProblem, "not a text file.*null byte on line 2"):
            sf.decode_source(b"x = 1\ny = 2\x00\x00\x07\n", "utils.py")

    def test_tabs_are_kept(self):
        source = "def f(x):\n\tif x:\n\t\treturn 1\n\treturn 2\n"
        self.assertEqual(sf.decode_source(source.encode(), "utils.py")[0], source)


class ImplementedFunctions(unittest.TestCase):
    def test_counts_functions_without_not_implemented(self):
        self.assertEqual(sf.implemented_functions("utils.py", IMPLEMENTED_UTILS), 2)
        self.assertEqual(sf.implemented_functions("utils.py", STUB_UTILS), 0)
        self.assertEqual(sf.implemented_functions("vae.py", IMPLEMENTED_VAE), 1)
        self.assertEqual(sf.implemented_functions("vae.py", STUB_VAE), 0)
        self.assertEqual(sf.implemented_functions("vae.py", "def negative_elbo_bound(x):\n    return x\n"), 0)
        self.assertEqual(sf.implemented_functions("utils.py", "def sample_gaussian(:\n"), 0)
        self.assertEqual(sf.implemented_functions("utils.py", "def kl(a):\n    return a\nkl_normal = kl\n"), 1)


class Selection(Case):
    def test_folder_holding_both_beats_other_homework_and_top_level_single_file(self):
        self.folder.write("hw1/utils.py", "def load(path):\n    return path\n")
        self.folder.write("utils.py", IMPLEMENTED_UTILS)
        self.folder.write("hw2/utils.py", IMPLEMENTED_UTILS)
        self.folder.write("hw2/vae.py", IMPLEMENTED_VAE)
        selection = self.select()
        self.assertEqual(self.graded(selection), {"utils.py": "hw2/utils.py", "vae.py": "hw2/vae.py"})
        self.assertEqual(sorted(selection.ignored), ["hw1/utils.py", "utils.py"])
        report = selection.report()
        self.assertTrue(report.startswith("Files graded: hw2/utils.py, hw2/vae.py"), report)
        self.assertIn("hw1/utils.py", report)

    def test_implemented_beats_more_recent_and_recent_beats_shallow(self):
        self.folder.write("new/utils.py", STUB_UTILS)
        self.folder.write("new/vae.py", STUB_VAE)
        self.folder.write("old/deeper/utils.py", IMPLEMENTED_UTILS, age=86400)
        self.folder.write("old/deeper/vae.py", IMPLEMENTED_VAE, age=86400)
        self.folder.write("utils.py", IMPLEMENTED_UTILS, age=2 * 86400)
        self.folder.write("vae.py", IMPLEMENTED_VAE, age=2 * 86400)
        self.assertEqual(self.graded(self.select())["vae.py"], "old/deeper/vae.py")

    def test_ties_go_to_the_shallowest_then_alphabetical(self):
        for prefix in ("b/", "a/", "a/x/"):
            self.folder.write(prefix + "utils.py", IMPLEMENTED_UTILS)
            self.folder.write(prefix + "vae.py", IMPLEMENTED_VAE)
        self.assertEqual(self.graded(self.select())["utils.py"], "a/utils.py")

    def test_files_from_two_folders_are_combined_and_said(self):
        self.folder.write("part1/utils.py", IMPLEMENTED_UTILS)
        self.folder.write("part2/vae.py", IMPLEMENTED_VAE)
        selection = self.select()
        self.assertEqual(self.graded(selection), {"utils.py": "part1/utils.py", "vae.py": "part2/vae.py"})
        self.assertIn("different folders", selection.report())

    def test_skipped_places(self):
        for relative in ("__MACOSX/utils.py", ".git/vae.py", ".ipynb_checkpoints/utils.py", "__pycache__/vae.py",
                         "._utils.py", "venv/lib/site-packages/utils.py", "env/bin/utils.py", "env/lib/utils.py",
                         "env/Scripts/utils.py"):
            self.folder.write(relative, IMPLEMENTED_UTILS)
        self.folder.write("env/pyvenv.cfg", "home = /usr/bin\n")
        self.folder.write("utils.py", IMPLEMENTED_UTILS)
        os.symlink(self.folder.root / "utils.py", self.folder.root / "vae.py")
        selection = self.select()
        self.assertEqual(self.graded(selection), {"utils.py": "utils.py"})
        self.assertEqual(selection.ignored, [])
        self.assertIn("vae.py not found in your submission", selection.problems["vae.py"])

    def test_a_homework_folder_made_a_virtual_environment_keeps_its_files(self):
        """`python -m venv .` in the homework folder: its own folders (bin, lib, ...) are skipped, not its files."""
        self.folder.write("hw2/pyvenv.cfg", "home = /usr/bin\n")
        self.folder.write("hw2/lib/python3.10/site-packages/utils.py", IMPLEMENTED_UTILS)
        self.folder.write("hw2/bin/vae.py", IMPLEMENTED_VAE)
        self.folder.write("hw2/utils.py", IMPLEMENTED_UTILS)
        self.folder.write("hw2/vae.py", IMPLEMENTED_VAE)
        selection = self.select()
        self.assertEqual(self.graded(selection), {"utils.py": "hw2/utils.py", "vae.py": "hw2/vae.py"})
        self.assertEqual(selection.ignored, [])

    def test_a_guard_that_raises_not_implemented_inside_an_if_is_no_stub(self):
        guarded = IMPLEMENTED_VAE.replace("def negative_elbo_bound(self, x):",
                                          "def negative_elbo_bound(self, x):\n        if x.dim() != 2:\n"
                                          "            raise NotImplementedError('batches of flat images only')")
        self.assertNotEqual(guarded, IMPLEMENTED_VAE)
        self.assertEqual(sf.implemented_functions("vae.py", guarded), 1)
        stub = IMPLEMENTED_VAE.replace("def negative_elbo_bound(self, x):",
                                       "def negative_elbo_bound(self, x):\n        raise NotImplementedError")
        self.assertEqual(sf.implemented_functions("vae.py", stub), 0)

    def test_case_only_names_are_accepted_with_a_note_and_exact_names_win(self):
        self.folder.write("Utils.py", IMPLEMENTED_UTILS)
        self.folder.write("VAE.py", IMPLEMENTED_VAE)
        selection = self.select()
        self.assertEqual(self.graded(selection), {"utils.py": "Utils.py", "vae.py": "VAE.py"})
        self.assertIn("differs only in case", selection.report())
        self.folder.write("vae.py", IMPLEMENTED_VAE)
        selection = self.select()
        self.assertEqual(self.graded(selection)["vae.py"], "vae.py")
        self.assertIn("VAE.py", selection.ignored)

    def test_near_miss_names_say_what_to_rename(self):
        self.folder.write("utils (1).py", IMPLEMENTED_UTILS)
        self.folder.write("hw/vae.py.txt", IMPLEMENTED_VAE)
        self.folder.write("hw2.ipynb", "{}")
        problems = self.select().problems
        self.assertIn("'utils (1).py': rename it to utils.py", problems["utils.py"])
        self.assertIn("'hw/vae.py.txt': rename it to vae.py", problems["vae.py"])
        self.assertIn("notebook", problems["vae.py"])

    def test_problem_files_are_reported_not_graded(self):
        self.folder.write("utils.py", IMPLEMENTED_UTILS.encode("utf-16"))
        self.folder.write("vae.py", b"")
        selection = self.select()
        self.assertEqual(set(selection.sources), {"utils.py"})
        self.assertIn("vae.py is empty", selection.problems["vae.py"])
        report = selection.report()
        self.assertTrue(report.startswith("Files graded: utils.py\n"), report)
        self.assertIn("UTF-16", report)
        self.assertIn("vae.py is empty", report)

    def test_write_gives_utf8_copies(self):
        self.folder.write("utils.py", IMPLEMENTED_UTILS.replace("\n", "\r\n").encode("utf-16"))
        self.folder.write("vae.py", IMPLEMENTED_VAE)
        with tempfile.TemporaryDirectory() as out:
            written = self.select().write(out)
            self.assertEqual(written["utils.py"].read_bytes(), IMPLEMENTED_UTILS.encode())


class Zips(Case):
    def make_zip(self, name, members, symlinks=(), **kwargs):
        path = self.folder.root / name
        with zipfile.ZipFile(path, "w", **kwargs) as archive:
            for member, content in members.items():
                archive.writestr(member, content)
            for member, target in symlinks:
                info = zipfile.ZipInfo(member)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, target)
        return path

    def test_single_zip_is_read_in_place(self):
        self.make_zip("hw2.zip", {"hw2/utils.py": IMPLEMENTED_UTILS, "hw2/vae.py": IMPLEMENTED_VAE,
                                  "__MACOSX/hw2/._utils.py": b"\x00\x05\x16\x07"})
        selection = self.select()
        self.assertEqual(self.graded(selection), {"utils.py": "hw2.zip: hw2/utils.py", "vae.py": "hw2.zip: hw2/vae.py"})
        self.assertEqual(selection.sources["vae.py"], IMPLEMENTED_VAE)
        self.assertEqual(list(self.folder.root.iterdir()), [self.folder.root / "hw2.zip"])   # nothing extracted

    def test_traversal_and_symlink_members_are_skipped(self):
        self.make_zip("a.zip", {"../utils.py": IMPLEMENTED_UTILS, "/abs/vae.py": IMPLEMENTED_VAE},
                      symlinks=[("hw2/vae.py", "/etc/passwd")])
        selection = self.select()
        self.assertEqual(selection.graded, {})

    def test_loose_files_win_over_a_zip_which_is_listed(self):
        self.folder.write("utils.py", IMPLEMENTED_UTILS)
        self.folder.write("vae.py", IMPLEMENTED_VAE)
        self.make_zip("old.zip", {"utils.py": STUB_UTILS})
        selection = self.select()
        self.assertEqual(self.graded(selection)["utils.py"], "utils.py")
        self.assertIn("old.zip (not opened)", selection.ignored)
        (self.folder.root / "vae.py").unlink()
        self.assertIn("old.zip was not opened", self.select().problems["vae.py"])

    def test_two_zips_are_not_guessed(self):
        self.make_zip("a.zip", {"utils.py": IMPLEMENTED_UTILS})
        self.make_zip("b.zip", {"utils.py": IMPLEMENTED_UTILS})
        self.assertIn("2 zip files", self.select().problems["utils.py"])

    def test_bomb_member_is_not_inflated_beyond_the_cap(self):
        self.make_zip("bomb.zip", {"utils.py": b"#" * (sf.MAX_SOURCE_BYTES + 10), "vae.py": IMPLEMENTED_VAE},
                      compression=zipfile.ZIP_DEFLATED)
        selection = self.select()
        self.assertIn("too large", selection.problems["utils.py"])
        self.assertIn("vae.py", selection.sources)

    def test_bad_zip_is_said(self):
        self.folder.write("hw2.zip", b"PK\x03\x04 not really")
        selection = self.select()
        self.assertIn("not a readable zip", selection.report())


if __name__ == "__main__":
    unittest.main()
