using LSVCR.TestServers;

namespace LSVCR.Data.Tests;

/// <summary>The shared python helper fails with the install command when numpy is missing, instead of letting a
/// cross-check pass without running.</summary>
public class DebianPythonTests
{
    [Fact]
    public void Runs_a_script_with_numpy()
    {
        Assert.Equal("float32 6.0", DebianPython.Run("import numpy as np; a = np.arange(4, dtype=np.float32); print(a.dtype, a.sum())"));
    }

    [Fact]
    public void An_interpreter_without_numpy_fails_with_the_install_command()
    {
        // -S skips the site module, so Debian's dist-packages (where python3-numpy lives) is not on the path.
        var e = Assert.Throws<InvalidOperationException>(() => DebianPython.Run(DebianPython.Interpreter, ["-I", "-S"], "print('ran')"));
        Assert.StartsWith(DebianPython.Missing, e.Message);
        Assert.Contains("/usr/bin/python3 -I -S cannot import numpy (ModuleNotFoundError: No module named 'numpy')", e.Message);
    }

    [Fact]
    public void A_missing_interpreter_fails_with_the_install_command()
    {
        var e = Assert.Throws<InvalidOperationException>(() => DebianPython.Run("/nonexistent/python3", [], "print('ran')"));
        Assert.StartsWith("python3-numpy is required (apt-get install python3-numpy): /nonexistent/python3 cannot import numpy (not found", e.Message);
    }

    [Fact]
    public void A_failing_script_is_a_failure_with_python_s_error()
    {
        var e = Assert.Throws<InvalidOperationException>(() => DebianPython.Run("import numpy; raise SystemExit('boom')"));
        Assert.Contains("boom", e.Message);
    }
}
