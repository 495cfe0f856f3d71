"""
The built wheel carries the twistd plugin, and a non-editable install of it
makes C{twistd --help} list C{clustersync}.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WheelTests(unittest.TestCase):
    """Build the wheel once per test and install it into a bare venv."""

    timeout = 240

    def buildWheel(self) -> str:
        """Build the project's wheel into a temp dir; return its path."""
        out = os.path.abspath(self.mktemp())
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=200)
        (wheel,) = [f for f in os.listdir(out) if f.endswith(".whl")]
        return os.path.join(out, wheel)

    def test_nonEditableInstallListsPlugin(self):
        """
        The wheel has C{twisted/plugins/clustersync_plugin.py} and no
        C{twisted/__init__.py} nor C{twisted/plugins/__init__.py}; installed
        (not editable) into a venv that sees only Twisted and the other
        dependencies, C{twistd --help} lists C{clustersync}, run from a
        directory that is not the checkout.
        """
        wheel = self.buildWheel()
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/clustersync_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertIn("clustersync/plugins/clustersync_builtin.py", names)

        venv = os.path.abspath(self.mktemp())
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
        python = os.path.join(venv, "bin", "python")
        target = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
        # The dependencies come from this environment's site-packages, added
        # by a .pth line: .pth files in it (such as an editable install of
        # this checkout) are not processed, so only the wheel provides
        # clustersync.
        with open(os.path.join(target, "deps.pth"), "w") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        result = subprocess.run(
            [python, "-I", "-c",
             "import sys; from twisted.scripts.twistd import run; "
             "sys.argv = ['twistd', '--help']; run()"],
            cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertIn("clustersync", result.stdout)
        where = subprocess.run(
            [python, "-I", "-c", "import clustersync; print(clustersync.__file__)"],
            cwd=elsewhere, stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        self.assertTrue(where.startswith(target), where)
