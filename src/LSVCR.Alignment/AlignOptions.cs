using LSVCR.Alignment.Lora;

namespace LSVCR.Alignment;

/// <summary>Stage-1 settings; defaults follow the reference run (MODEL.md §3) where a CPU allows.</summary>
public sealed record AlignOptions
{
    /// <summary>"minilm" (built in) or a Hugging Face decoder folder (config.json, *.safetensors, tokenizer.json).</summary>
    public string Backbone { get; init; } = "minilm";
    /// <summary>"cpu" or "cuda" (CUDA needs TorchSharp's CUDA natives in the application).</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>Examples to train on (Rec and CommRank train examples mixed); null = one pass over all of them × <see cref="Epochs"/>.</summary>
    public int? Examples { get; init; }
    /// <summary>Stop (checkpoint, then write the outputs) once training has run this long.</summary>
    public TimeSpan? TimeBudget { get; init; }
    public int Epochs { get; init; } = 1;
    public int BatchSize { get; init; } = 8;
    /// <summary>Batches per optimiser step (effective batch = BatchSize × this).</summary>
    public int Accumulation { get; init; } = 1;
    public double Lr { get; init; } = 3e-4;
    /// <summary>Linear warmup as a fraction of the optimiser steps, then linear decay to 0.</summary>
    public double Warmup { get; init; } = 0.03;
    public double WeightDecay { get; init; }
    public int Seed { get; init; } = 42;
    public int MaxHistory { get; init; } = 20;
    public int MaxEntryComments { get; init; } = 3;
    /// <summary>Tokens per item text (framing included) when the LLM encodes titles and comments.</summary>
    public int ItemTokens { get; init; } = 32;
    /// <summary>Tokens per prompt (framing and response included); capped at the backbone's limit.</summary>
    public int PromptTokens { get; init; } = 512;
    /// <summary>E: the text-embedding width of the aligned SR model and the re-encoded embeddings.</summary>
    public int TextDim { get; init; } = 256;
    public double AugmentHistory { get; init; } = 0.5;
    public double AugmentEntry { get; init; } = 0.3;
    public LoraOptions Lora { get; init; } = new();
    /// <summary>Optimiser steps between resumable checkpoints.</summary>
    public int CheckpointEvery { get; init; } = 20;
    /// <summary>Texts per forward when re-encoding the catalogue.</summary>
    public int EncodeBatch { get; init; } = 64;
    /// <summary>libtorch intra-op threads; null = libtorch's default.</summary>
    public int? Threads { get; init; }

    public void Validate()
    {
        void Check(bool ok, string message) { if (!ok) throw new LsvcrException(message, ErrorKind.BadInput); }
        Check(Examples is null or > 0, $"examples must be positive (got {Examples})");
        Check(TimeBudget is null || TimeBudget > TimeSpan.Zero, "time-budget must be positive");
        Check(Epochs >= 1, $"epochs must be at least 1 (got {Epochs})");
        Check(BatchSize >= 2, $"batch must be at least 2: the in-batch contrast needs negatives (got {BatchSize})");
        Check(Accumulation >= 1, $"accumulation must be at least 1 (got {Accumulation})");
        Check(Lr > 0, $"lr must be positive (got {Lr})");
        Check(Warmup is >= 0 and <= 1, $"warmup must be in [0, 1] (got {Warmup})");
        Check(WeightDecay >= 0, $"weight-decay must be 0 or more (got {WeightDecay})");
        Check(MaxHistory is >= 1 and <= 50, $"max-history must be in [1, 50] (got {MaxHistory})");
        Check(MaxEntryComments >= 1, $"max entry comments must be at least 1 (got {MaxEntryComments})");
        Check(ItemTokens >= 3, $"item-tokens must be at least 3 (got {ItemTokens})");
        Check(PromptTokens >= 32, $"prompt-tokens must be at least 32 (got {PromptTokens})");
        Check(TextDim >= 1, $"text dimension must be positive (got {TextDim})");
        Check(AugmentHistory is >= 0 and <= 1 && AugmentEntry is >= 0 and <= 1, "augmentation probabilities must be in [0, 1]");
        Check(CheckpointEvery >= 1, $"checkpoint-every must be at least 1 (got {CheckpointEvery})");
        Check(EncodeBatch >= 1, $"encode batch must be at least 1 (got {EncodeBatch})");
        Check(Device is "cpu" or "cuda", $"device must be cpu or cuda (got '{Device}')");
        Lora.Validate();
    }
}
