using LSVCR.Cli;
using LSVCR.Modeling.Cpu;

// Before anything loads libtorch: its OpenMP threads otherwise spin between the thousands of small ops of a
// training step and starve the working thread on small machines (see OpenMp).
CpuHost.BeforeTorchLoads();
return await LsvcrCli.Build().Parse(args).InvokeAsync();
