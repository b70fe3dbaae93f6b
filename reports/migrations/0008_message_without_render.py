"""Messages no longer name a render: the report side knows no documents.

Every message linked to a render was written by the email flow, whose `renders.RenderEmail` row names
the message by the same (project, message id) pair (`RenderEmail.message_id` is the message's client
message id); that row is the link from a render to its messages, kept on the renders side, so no data
moves. Messages themselves, their events and the rollups stay as they are.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('reports', '0007_first_touches_pending'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='message',
            name='render',
        ),
    ]
