namespace LSVCR.Data;

public sealed record SynthOptions
{
    public int Users { get; init; } = 1000;
    public int Seed { get; init; } = 42;
}

/// <summary>Generates a synthetic dataset that behaves like real interaction logs (see docs/data.md).</summary>
public static class SyntheticDataset
{
    public static LsvcrDataset Generate(SynthOptions options, IProgress<JobProgress>? progress = null) =>
        throw new NotImplementedException();
}
