namespace LSVCR.Data;

/// <summary>One problem found in a dataset, located by file and (1-based) line where it has one.</summary>
public sealed record DatasetProblem(string File, int? Line, string Message)
{
    public override string ToString() => Line is { } l ? $"{File}:{l}: {Message}" : $"{File}: {Message}";
}

public sealed class DatasetValidationException(IReadOnlyList<DatasetProblem> problems)
    : LsvcrException(Format(problems))
{
    public IReadOnlyList<DatasetProblem> Problems { get; } = problems;

    private static string Format(IReadOnlyList<DatasetProblem> problems)
    {
        const int shown = 20;
        var lines = problems.Take(shown).Select(p => "  " + p);
        var more = problems.Count > shown ? $"\n  … and {problems.Count - shown} more (run `lsvcr data validate` for all)" : "";
        return $"the dataset has {problems.Count} problem(s):\n{string.Join('\n', lines)}{more}";
    }
}
