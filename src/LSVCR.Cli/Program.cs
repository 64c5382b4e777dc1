using LSVCR.Modeling.Cpu;
using LSVCR.Cli;
using LSVCR.Modeling;

// Before anything loads libtorch: its OpenMP threads otherwise spin between the thousands of small ops of a
// training step and starve the working thread on small machines (see OpenMp).
OpenMp.PreferPassiveWaiting();
return await LsvcrCli.Build().Parse(args).InvokeAsync();
