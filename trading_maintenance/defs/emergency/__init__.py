"""Emergency maintenance: the job and the sensors that launch it when health falls low."""
