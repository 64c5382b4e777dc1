using LSVCR.Alignment.Decoder;
using LSVCR.Alignment.Lora;
using LSVCR.Alignment.MiniLm;
using LSVCR.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>Everything stage 1 trains: the LLM (LoRA adapters), its heads and the SR model in its stage-1 form.</summary>
public sealed class AlignmentModels : IDisposable
{
    private AlignmentModels(TextBackbone llm, AlignmentHeads heads, RecCom sr, Device device)
    {
        Llm = llm;
        Heads = heads;
        Sr = sr;
        Device = device;
    }

    public TextBackbone Llm { get; }
    public AlignmentHeads Heads { get; }
    public RecCom Sr { get; }
    public Device Device { get; }

    /// <summary>Opens the backbone on the device, adds LoRA, and builds fresh heads and SR model (seeded by the caller).</summary>
    public static AlignmentModels Create(AlignOptions o)
    {
        var device = ResolveDevice(o.Device);
        TextBackbone llm = o.Backbone == "minilm" ? BertEncoder.MiniLm(device) : HfDecoderFolder.Load(o.Backbone, device,
            device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32);
        LoraModel.Apply(llm, o.Lora);
        var config = StageOneConfig(o.TextDim);
        var heads = new AlignmentHeads(llm.HiddenSize, o.TextDim, config.Hidden);
        // The stage-1 form has no id tables, so the catalogue size does not shape any weight: a 2-row placeholder
        // table satisfies the constructor without holding [n, E] floats the stage-1 forward never reads.
        var sr = new RecCom(config, zeros(config.PhotoCount, o.TextDim), zeros(config.CommentCount, o.TextDim));
        heads.to(device);
        sr.to(device);
        return new AlignmentModels(llm, heads, sr, device);
    }

    public static RecComConfig StageOneConfig(int textDim) =>
        new() { PhotoCount = 2, CommentCount = 1, TextDim = textDim, UseIds = false };

    /// <summary>The trainable parameters under stable names ("llm.", "heads.", "reccom."), for the optimiser and checkpoints.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Trainable() =>
        Llm.named_parameters().Where(p => p.parameter.requires_grad).Select(p => ("llm." + p.name, p.parameter))
            .Concat(Heads.named_parameters().Select(p => ("heads." + p.name, p.parameter)))
            .Concat(Sr.named_parameters().Select(p => ("reccom." + p.name, p.parameter)))
            .ToList();

    public void Train(bool on)
    {
        Llm.train(on);
        Heads.train(on);
        Sr.train(on);
    }

    private static Device ResolveDevice(string device)
    {
        if (device == "cuda")
        {
            if (!cuda.is_available())
                throw new LsvcrException("device cuda: TorchSharp sees no CUDA device (this build ships the CPU natives; a GPU machine needs libtorch-cuda)", ErrorKind.BadInput);
            return CUDA;
        }
        return CPU;
    }

    public void Dispose()
    {
        Llm.Dispose();
        Heads.Dispose();
        Sr.Dispose();
    }
}
