"""What a study is made of: the paper's experiments and their variants, and their reports.

* :mod:`.settings` -- the experiments' constants (schedules, sizes) and :class:`~.settings.Settings`;
* :mod:`.prepare` -- the data (and cached CIFAR features) of each experiment;
* :mod:`.reproduce` -- ``analogtrain reproduce``: every variant of an experiment, several chips each;
* :mod:`.analysis` -- state histograms, pulse statistics, the cost of batching chips;
* :mod:`.checks` -- the paper's claims, held against a run;
* :mod:`.figures`, :mod:`.report` -- pictures and markdown from a run's results;
* :mod:`.merge` -- several runs, one report.
"""
