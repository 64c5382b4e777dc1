using System.CommandLine;

namespace LSVCR.Cli.Tests;

public class CommandTreeTests
{
    private static IEnumerable<(string Path, Command Command)> Walk(Command command, string path)
    {
        yield return (path, command);
        foreach (var sub in command.Subcommands)
            foreach (var x in Walk(sub, path.Length == 0 ? sub.Name : $"{path} {sub.Name}")) yield return x;
    }

    [Fact]
    public void Every_command_prints_help_with_its_description()
    {
        var all = Walk(LsvcrCli.Build(), "").ToList();
        Assert.Contains(all, c => c.Path == "pipeline");
        Assert.Contains(all, c => c.Path == "data validate");
        foreach (var (path, command) in all)
        {
            Assert.False(string.IsNullOrWhiteSpace(command.Description), $"'{path}' has no description");
            var output = new StringWriter();
            var args = path.Split(' ', StringSplitOptions.RemoveEmptyEntries).Append("--help").ToArray();
            var exit = LsvcrCli.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = output });
            Assert.Equal(0, exit);
            var text = output.ToString();
            Assert.Contains("Usage:", text);
            Assert.Contains(Squash(command.Description!.Split('.')[0]), Squash(text));
        }
    }

    private static string Squash(string s) => System.Text.RegularExpressions.Regex.Replace(s, @"\s+", " ").Trim();

    [Fact]
    public void Unknown_option_is_rejected_with_a_parse_error()
    {
        var result = LsvcrCli.Build().Parse(["pipeline", "--no-such-option"]);
        Assert.Contains(result.Errors, e => e.Message.Contains("--no-such-option"));
    }

    [Theory]
    [InlineData("full,popularity", new[] { "full", "popularity" })]
    [InlineData("full id-only", new[] { "full", "id-only" })]
    public void Variant_lists_accept_commas_and_spaces(string given, string[] expected)
    {
        var parsed = Commands.PipelineCommands.ParseList(given.Split(' '), "--variants", ["full", "id-only", "popularity"]);
        Assert.Equal(expected, parsed);
    }

    [Fact]
    public void Unknown_variant_names_the_option_and_the_allowed_values()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            Commands.PipelineCommands.ParseList(["full,bogus"], "--variants", ["full", "popularity"]));
        Assert.Equal("--variants: unknown value 'bogus' (expected one of full, popularity)", e.Message);
    }
}
