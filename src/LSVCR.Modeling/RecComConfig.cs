using System.Text.Json.Serialization;

namespace LSVCR.Modeling;

/// <summary>Hyper-parameters of the SR model (MODEL.md §2); defaults are the reference's.</summary>
public sealed record RecComConfig
{
    /// <summary>Videos in the catalogue including the pad row 0.</summary>
    public required int PhotoCount { get; init; }
    /// <summary>Comments in the catalogue including the pad row 0.</summary>
    public required int CommentCount { get; init; }
    /// <summary>E: width of the item text embeddings fed to <c>llm_adapter</c>.</summary>
    public int TextDim { get; init; } = 256;
    public int Hidden { get; init; } = 64;
    public int Heads { get; init; } = 2;
    public int EncoderLayers { get; init; } = 2;
    public int MixLayers { get; init; } = 1;
    public int Inner { get; init; } = 256;
    public double HiddenDropout { get; init; } = 0.3;
    public double AttentionDropout { get; init; } = 0.3;
    public double LayerNormEps { get; init; } = 1e-8;
    public int MaxPosition { get; init; } = 50;
    public double Temperature { get; init; } = 0.07;
    /// <summary>Stage-2 id embeddings: <c>photo_embedding</c> and <c>gate</c>. False = stage-1 form / text-only.</summary>
    public bool UseIds { get; init; } = true;
    /// <summary>Item texts through <c>llm_adapter</c>. False = id-only (SASRec-style) variant.</summary>
    public bool UseText { get; init; } = true;
    /// <summary>Learned comment-id embeddings (<c>comment_embedding</c>): how the id-only variant represents comments.</summary>
    public bool CommentIds { get; init; }
    /// <summary>Standard stacking (each layer attends to the previous layer's output). Off = reference behaviour.</summary>
    public bool StandardStacking { get; init; }

    [JsonIgnore] public bool IsValidShape => PhotoCount > 1 && CommentCount > 0 && Hidden % Heads == 0;
}
