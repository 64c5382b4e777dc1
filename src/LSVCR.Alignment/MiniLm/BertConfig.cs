namespace LSVCR.Alignment.MiniLm;

/// <summary>Shape of a BERT encoder; the defaults are all-MiniLM-L6-v2's config.json.</summary>
public sealed record BertConfig
{
    public int VocabSize { get; init; } = 30522;
    public int Hidden { get; init; } = 384;
    public int Layers { get; init; } = 6;
    public int Heads { get; init; } = 12;
    public int Intermediate { get; init; } = 1536;
    public int MaxPositions { get; init; } = 512;
    public int TypeVocabSize { get; init; } = 2;
    public double LayerNormEps { get; init; } = 1e-12;
    public double HiddenDropout { get; init; } = 0.1;
    public double AttentionDropout { get; init; } = 0.1;
}
