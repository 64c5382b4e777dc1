using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Xml.Linq;

namespace LSVCR.Modeling.Tests;

/// <summary>
/// The kernels pick their vector width when the JIT compiles them: on this machine the tests above run the AVX-512
/// paths. These tests run every kernel test (<c>Category=Kernels</c>) again in a child <c>dotnet test</c> of this
/// assembly with the runtime told to ignore AVX-512 (the AVX2 paths a machine without AVX-512 runs) and with no
/// hardware intrinsics at all (the scalar fallback; without the default-size parity step, ≈ 12 minutes there), and
/// assert that they ran, that they passed, and that the child really saw the instruction sets it was asked for.
/// </summary>
public sealed class InstructionSetTests
{
    /// <summary>Set in the child: where <see cref="KernelInstructionSetProbe"/> writes what the child's JIT saw.</summary>
    internal const string ReportVariable = "LSVCR_TEST_ISA_REPORT";

    /// <remarks>.NET 10 reads <c>DOTNET_EnableAVX512</c> (the per-subset <c>DOTNET_EnableAVX512F</c> of .NET 8 is
    /// ignored there, measured: Avx512F.IsSupported stays true), so the AVX2 run sets both.</remarks>
    [Theory]
    [InlineData("DOTNET_EnableAVX512,DOTNET_EnableAVX512F", "avx2", "Category=Kernels|Category=KernelsDefaultSize")]
    [InlineData("DOTNET_EnableHWIntrinsic", "scalar", "Category=Kernels")]
    public async Task Kernel_tests_pass_without_the_instruction_set(string variables, string expected, string filter)
    {
        var dir = Directory.CreateTempSubdirectory("lsvcr-isa-").FullName;
        try
        {
            var report = Path.Combine(dir, "isa.txt");
            var psi = new ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in new[] { "test", typeof(InstructionSetTests).Assembly.Location, "--filter", filter,
                         "--logger", "trx;LogFileName=kernels.trx", "--results-directory", dir })
                psi.ArgumentList.Add(a);
            foreach (var v in variables.Split(',')) psi.Environment[v] = "0";
            psi.Environment[ReportVariable] = report;
            using var child = Process.Start(psi)!;
            var stdout = child.StandardOutput.ReadToEndAsync();
            var stderr = child.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(30));
            await child.WaitForExitAsync(timeout.Token);
            var output = await stdout + await stderr;
            var trx = Directory.GetFiles(dir, "kernels.trx", SearchOption.AllDirectories).SingleOrDefault();
            Assert.True(trx is not null, $"no test results from the child run (exit {child.ExitCode}):\n{Tail(output)}");
            var counters = XDocument.Load(trx).Descendants().Single(e => e.Name.LocalName == "Counters");
            int Count(string name) => int.Parse(counters.Attribute(name)!.Value);
            Assert.True(child.ExitCode == 0 && Count("failed") == 0, $"{Count("failed")} kernel tests failed with {variables}=0:\n{Tail(output)}");
            Assert.True(Count("passed") >= 100, $"only {Count("passed")} kernel tests ran with {variables}=0");
            Assert.True(File.Exists(report), "the child did not run the instruction-set probe");
            Assert.Equal(expected, File.ReadAllText(report).Trim());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static string Tail(string s) => s.Length <= 4000 ? s : s[^4000..];
}

/// <summary>Part of the kernel tests: names the widest vector path the JIT enables here ("avx512", "avx2" or
/// "scalar") and, in a child of <see cref="InstructionSetTests"/>, reports it to the parent.</summary>
[Trait("Category", "Kernels")]
public sealed class KernelInstructionSetProbe
{
    internal static string Widest() =>
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? "avx512"
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported ? "avx2"
        : !Vector128.IsHardwareAccelerated && !Sse.IsSupported ? "scalar"
        : "other";

    [Fact]
    public void Vector_paths_follow_the_instruction_sets()
    {
        // The kernels' branches test these two ways; they must agree, or a kernel would take a path the CPU lacks.
        Assert.Equal(Avx512F.IsSupported, Vector512.IsHardwareAccelerated);
        Assert.Equal(Avx2.IsSupported, Vector256.IsHardwareAccelerated);
        Assert.Equal(Avx2.IsSupported && Fma.IsSupported, ModelBackend.CpuKernelsSupported);
        if (Environment.GetEnvironmentVariable(InstructionSetTests.ReportVariable) is { Length: > 0 } report)
            File.WriteAllText(report, Widest());
    }
}
