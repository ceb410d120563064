"""What SES reports back: SNS message verification (``sns``), SES
notifications applied to the list (``events``), polling them from SQS
(``sqs``) and per-issue delivery figures (``stats``)."""
