"""TensorFlow's start-up noise is filtered from stderr; real errors pass."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_noise_is_dropped_and_real_errors_pass():
    code = textwrap.dedent("""
        import os, sys
        from edgebot.train.quiet import quiet_tensorflow
        with quiet_tensorflow() as dropped:
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
            os.write(2, b"I0000 00:00:1 123 port.cc:153] oneDNN custom operations are on. You may see...\\n")
            os.write(2, b"E0000 00:00:1 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool x\\n")
            os.write(2, b"progress 10%\\rprogress 20%\\r")
            os.write(2, b"E0000 real_op.cc:1] Invalid argument: shapes do not match\\n")
            print("Traceback (most recent call last): boom", file=sys.stderr)
        print(dropped[0])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "3"
    assert "oneDNN" not in res.stderr and "use_unbounded_threadpool" not in res.stderr and "absl" not in res.stderr
    assert "shapes do not match" in res.stderr and "Traceback (most recent call last): boom" in res.stderr
    assert "progress 20%" in res.stderr
