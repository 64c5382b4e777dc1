using LSVCR.Cli.Commands;

namespace LSVCR.Cli.Tests;

public class AlignCommandTests
{
    [Theory]
    [InlineData("90s", 90)]
    [InlineData("5m", 300)]
    [InlineData("1.5h", 5400)]
    [InlineData("00:02:00", 120)]
    public void Time_budget_accepts_suffixed_and_clock_durations(string text, double seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), AlignCommands.ParseDuration(text));

    [Theory]
    [InlineData("soon")]
    [InlineData("-5m")]
    [InlineData("0s")]
    public void Time_budget_rejects_what_is_not_a_positive_duration(string text)
    {
        var e = Assert.Throws<LsvcrException>(() => AlignCommands.ParseDuration(text));
        Assert.Contains("--time-budget", e.Message);
    }

    [Fact]
    public async Task Align_with_a_batch_of_one_fails_with_one_clear_line()
    {
        using var dir = new TempDir();
        var result = await Lsvcr.RunAsync("align", "--data", dir["nope"], "--out", dir["out"], "--batch", "1");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("batch must be at least 2", result.Stderr);
        Assert.DoesNotContain("--batch", result.Stderr); // the library names the setting, not the flag
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task Align_on_a_missing_dataset_names_it()
    {
        using var dir = new TempDir();
        var result = await Lsvcr.RunAsync("align", "--data", dir["nope"], "--out", dir["out"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("nope", result.Stderr);
    }
}
