"""Clock targets in seconds: a chat's first response can be promised in 30 seconds. Existing clocks keep their
targets (minutes x 60)."""

from django.db import migrations, models
from django.db.models import F


def to_seconds(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("desk", "SlaClock").objects.update(target_seconds=F("target_minutes") * 60)


def to_minutes(apps, schema_editor):  # type: ignore[no-untyped-def]
    # whole minutes only: a sub-minute target becomes 1 minute when migrating back
    SlaClock = apps.get_model("desk", "SlaClock")
    for clock in SlaClock.objects.only("pk", "target_seconds"):
        SlaClock.objects.filter(pk=clock.pk).update(target_minutes=max(1, -(-clock.target_seconds // 60)))


class Migration(migrations.Migration):

    dependencies = [
        ("desk", "0010_chat_channel"),
    ]

    operations = [
        migrations.AddField(
            model_name="slaclock",
            name="target_seconds",
            field=models.PositiveIntegerField(default=0, help_text="The target in business seconds (a chat's can be 30)."),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="slaclock",
            name="target_minutes",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.RunPython(to_seconds, to_minutes),
        migrations.RemoveField(
            model_name="slaclock",
            name="target_minutes",
        ),
    ]
